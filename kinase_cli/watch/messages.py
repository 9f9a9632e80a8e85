"""Which messages the watcher accepts (the contract plus the stack's own bucket) and which it shows."""

from __future__ import annotations

from dataclasses import dataclass


def accept(body: str, bucket: str) -> dict:
    """The validated message; raises ContractError when the body breaks the contract or names another bucket.

    A message pointing at a foreign bucket is refused even when well formed: `--save` would
    otherwise fetch whatever object a producer chose. The frame time is parsed here too, since the
    schema's date-time format is only checked when jsonschema's optional format support is installed.
    """
    from worker.contract import ContractError, parse, parse_iso

    message = parse(body)
    try:
        parse_iso(message["frame_time"])
    except ValueError:
        raise ContractError(f"invalid at frame_time: {message['frame_time']!r} is not a date-time") from None
    if message["bucket"] != bucket:
        raise ContractError(f"foreign bucket: {message['bucket']!r} is not the stack's bucket {bucket!r}")
    return message


@dataclass(frozen=True)
class Filter:
    """The operator's `--class`, `--min-conf` and `--stream`."""

    classes: frozenset[str] = frozenset()
    min_conf: float = 0.0
    stream: str | None = None

    @property
    def on_detections(self) -> bool:
        return bool(self.classes) or self.min_conf > 0

    def detections(self, message: dict) -> list[dict] | None:
        """The detections to show, or None when the whole message is filtered out.

        With a class or confidence filter, a frame with no matching detection is filtered out.
        """
        if self.stream is not None and message["stream_name"] != self.stream:
            return None
        kept = [d for d in message["summary"] if d["conf"] >= self.min_conf and (not self.classes or d["class"] in self.classes)]
        if self.on_detections and not kept:
            return None
        return kept
