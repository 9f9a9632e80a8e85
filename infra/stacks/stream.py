"""The Kinesis Video stream the camera (or `kinase stream put`) feeds.

Nothing may `GetAtt` this resource: moto's CloudFormation skips it, so the local stack creates the
stream through the API and everything else refers to it by name (`stream_arn`).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_kinesisvideo as kinesisvideo
from constructs import Construct

from infra import naming
from infra.stacks.outputs import output

RETENTION_HOURS = naming.STREAM_RETENTION_HOURS


def stream_arn(stack: cdk.Stack, name: str) -> str:
    """The stream's ARN pattern; the real ARN ends in a creation time nobody knows before it exists."""
    return stack.format_arn(service="kinesisvideo", resource="stream", resource_name=f"{name}/*")


class StreamStack(cdk.Stack):
    def __init__(self, scope: Construct, id: str, *, stream_name: str, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        kinesisvideo.CfnStream(self, "Stream", name=stream_name, data_retention_in_hours=RETENTION_HOURS, media_type="video/h264")
        output(self, "StreamName", stream_name)
        output(self, "StreamRetentionHours", str(RETENTION_HOURS))
