"""The environment's events topic as the storage stack makes it, for the tests of a running worker's events: an SNS
topic with a queue subscribed raw, what that queue received, and the events counted as the ground truth counts them."""

from __future__ import annotations

from worker.events import contract as events


def events_topic(media, name: str) -> tuple[str, str]:
    """An SNS topic with a queue subscribed to it (raw delivery: the body is the event), as the storage stack makes them."""
    sns = media.client("sns")
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue_url = media.sqs.create_queue(QueueName=name + "-events")["QueueUrl"]
    queue_arn = media.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    return topic, queue_url


def received(media, queue_url: str) -> dict[str, dict]:
    """The events in the queue by event_id (delivery is at least once), each validated by the contract."""
    found: dict[str, dict] = {}
    while True:
        got = media.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", [])
        if not got:
            return found
        for m in got:
            event = events.parse(m["Body"])
            found[event["event_id"]] = event
        media.sqs.delete_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
        )


def counted(found: dict[str, dict]) -> dict:
    """The events as the ground truth's counts (event_samples._counts): line crossings per direction and class, zone entries, exits, dwells."""
    lines: dict = {"door": {"in": {}, "out": {}}}
    zones: dict = {"bay": {"entered": {}, "left": {}, "dwell": {}}}
    kinds = {"zone_entered": "entered", "zone_left": "left", "dwell": "dwell"}
    for e in found.values():
        table = lines[e["line"]][e["direction"]] if e["type"] == "line_crossed" else zones[e["zone"]][kinds[e["type"]]]
        table[e["class"]] = table.get(e["class"], 0) + 1
    return {"lines": lines, "zones": {"bay": {k: dict(sorted(v.items())) for k, v in zones["bay"].items()}}}
