"""Which incarnation of a Kinesis Video stream the worker reads: its ARN, which ends in its creation time.

A stream deleted and created again under the same name is another stream: its fragment numbers
start over, and a checkpoint or a frame id of the old one means nothing in it. Frame ids and
checkpoints therefore carry the ARN (DescribeStream), not only the name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worker import aws
from worker.sources.errors import SourceError


@dataclass(frozen=True)
class Incarnation:
    arn: str
    created: str  # ISO 8601 UTC

    def __str__(self) -> str:
        return f"{self.arn} (created {self.created})"


def describe(session, stream: str) -> Incarnation:
    from worker.contract import iso

    control = aws.client(session, "kinesisvideo")
    try:
        info = aws.retry(
            lambda: control.describe_stream(StreamName=stream)["StreamInfo"], what=f"DescribeStream {stream}", give_up_after=60
        )
    except aws.FatalError as exc:
        raise SourceError(str(exc)) from None
    created = info.get("CreationTime")
    return Incarnation(info["StreamARN"], iso(created) if isinstance(created, datetime) else str(created or ""))
