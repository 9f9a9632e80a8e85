"""kinase: operator CLI for a Kinesis Video -> YOLO -> S3/SQS pipeline."""

__version__ = "0.1.0"
