"""The dead-letter queue: look at what is there and why, and move it back.

Reading a queue means receiving, so `peek` holds what it read (invisible for `HOLD_S`) until it
has seen everything once, then makes it all visible again. `move` sends each message to the
results queue first and deletes it from the DLQ only after SQS accepted the send: a crash in
between can duplicate a message, never lose one.
moto has no StartMessageMoveTask, so the move is done here and is the same against AWS.
"""

from __future__ import annotations

from dataclasses import dataclass

from kinase_cli.watch.receiving import MAX_BATCH
from worker.contract import iso

HOLD_S = 120
WAIT_S = 1


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    sent: int | None  # epoch ms
    first_received: int | None  # epoch ms
    receive_count: int
    body: str
    reason: str

    def as_dict(self) -> dict:
        return {
            "message_id": self.message_id,
            "sent_at": iso(self.sent / 1000) if self.sent is not None else None,
            "first_received_at": iso(self.first_received / 1000) if self.first_received is not None else None,
            "receive_count": self.receive_count,
            "reason": self.reason,
            "body": self.body,
        }


def diagnose(body: str, bucket: str | None) -> str:
    """Why the watcher refuses this body, or `valid` when it would accept it now."""
    from kinase_cli.watch.messages import accept
    from worker.contract import ContractError, parse

    try:
        if bucket is None:
            parse(body)
        else:
            accept(body, bucket)
    except ContractError as exc:
        return exc.reason
    return "valid"


def _receive(sqs, url: str, count: int, attributes: bool) -> list[dict]:
    params = dict(
        QueueUrl=url, MaxNumberOfMessages=count, WaitTimeSeconds=WAIT_S, VisibilityTimeout=HOLD_S, MessageSystemAttributeNames=["All"]
    )
    if attributes:
        params["MessageAttributeNames"] = ["All"]
    return sqs.receive_message(**params).get("Messages", [])


def _release(sqs, url: str, handles: list[str]) -> None:
    for start in range(0, len(handles), MAX_BATCH):
        chunk = handles[start : start + MAX_BATCH]
        sqs.change_message_visibility_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0} for i, h in enumerate(chunk)]
        )


def peek(sqs, url: str, bucket: str | None, limit: int) -> list[DeadLetter]:
    """Up to `limit` messages of the DLQ, each read once and put back (receive counts grow by one)."""
    seen: dict[str, DeadLetter] = {}
    handles: list[str] = []
    try:
        while len(seen) < limit:
            batch = _receive(sqs, url, min(MAX_BATCH, limit - len(seen)), attributes=False)
            if not batch:
                break
            for m in batch:
                handles.append(m["ReceiptHandle"])
                attrs = m.get("Attributes", {})
                seen.setdefault(
                    m["MessageId"],
                    DeadLetter(
                        message_id=m["MessageId"],
                        sent=_int(attrs.get("SentTimestamp")),
                        first_received=_int(attrs.get("ApproximateFirstReceiveTimestamp")),
                        receive_count=int(attrs.get("ApproximateReceiveCount", 0)),
                        body=m.get("Body", ""),
                        reason=diagnose(m.get("Body", ""), bucket),
                    ),
                )
    finally:
        _release(sqs, url, handles)
    return list(seen.values())


def _int(value) -> int | None:
    return None if value is None else int(value)


def _send_attributes(attributes: dict) -> dict:
    keep = ("DataType", "StringValue", "BinaryValue")
    return {name: {k: v for k, v in value.items() if k in keep} for name, value in attributes.items()}


def move(sqs, source: str, destination: str) -> tuple[int, list[str]]:
    """Move every message of `source` to `destination`; returns (moved, reasons for those left behind)."""
    moved = 0
    problems: list[str] = []
    held: list[str] = []
    try:
        while True:
            batch = _receive(sqs, source, MAX_BATCH, attributes=True)
            if not batch:
                break
            entries = []
            for i, m in enumerate(batch):
                entry = {"Id": str(i), "MessageBody": m["Body"]}
                if m.get("MessageAttributes"):
                    entry["MessageAttributes"] = _send_attributes(m["MessageAttributes"])
                entries.append(entry)
            response = sqs.send_message_batch(QueueUrl=destination, Entries=entries)
            sent = {s["Id"] for s in response.get("Successful", [])}
            for failure in response.get("Failed", []):
                message = batch[int(failure["Id"])]
                held.append(message["ReceiptHandle"])
                problems.append(f"{message['MessageId']}: {failure.get('Code')}: {failure.get('Message', '')}")
            done = [batch[int(i)] for i in sorted(sent, key=int)]
            if done:
                deleted = sqs.delete_message_batch(
                    QueueUrl=source, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)]
                )
                moved += len(deleted.get("Successful", []))
                for failure in deleted.get("Failed", []):
                    problems.append(
                        f"{done[int(failure['Id'])]['MessageId']}: copied but not deleted from the DLQ "
                        f"({failure.get('Code')}): it may be moved twice"
                    )
    finally:
        _release(sqs, source, held)
    return moved, problems
