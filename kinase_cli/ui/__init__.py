"""Output and errors: the consoles (data to stdout, progress to stderr), the JSON envelope, one-line errors."""
