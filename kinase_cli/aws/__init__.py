"""AWS-facing seams: the session factory (target), stack outputs, task definitions, logs, PutMedia, prices."""
