"""The kinase worker: reads video, detects with YOLO, delivers annotated frames to S3 and results to SQS (`python -m worker`)."""
