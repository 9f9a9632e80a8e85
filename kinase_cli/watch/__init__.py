"""`kinase watch` and `kinase dlq`: SQS receiving, statistics, rendering and saving, kept apart from the CLI."""
