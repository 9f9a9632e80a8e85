"""`kinase notify` on the deployed local stack: subscriptions to the events topic (stack output EventsTopicArn) with
filter policies, evaluated by moto's SNS, delivering to an SQS queue (raw) and to an HTTP webhook started here.

Events are published here as a worker publishes them: the event JSON as the message, with the message
attributes of worker/events/attributes.py. moto's SNS delivers to http(s) endpoints with a POST of the
`Notification` JSON (sns/models.py, Subscription.publish: without the message attributes AWS adds, and with no
SubscriptionConfirmation first: moto confirms every subscription at once); https would need a certificate moto
trusts, so the webhook here is http.
"""

from __future__ import annotations

import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from support.cli import kinase
from support.json_contract import envelope
from worker.events import contract
from worker.events.attributes import message_attributes

pytestmark = pytest.mark.e2e

STREAM = "notify-e2e-cam"


def notify(*args: str):
    return kinase("notify", *args, "--local", env={"COLUMNS": "200"}, timeout=120)


def published(stack, event: dict) -> None:
    sns = stack.client("sns")
    sns.publish(TopicArn=stack.outputs["EventsTopicArn"], Message=contract.dumps(event), MessageAttributes=message_attributes(event))


def an_event(n: int, type_: str = "line_crossed", *, alert: bool = True, stream: str = STREAM) -> dict:
    where = {"line": "door", "direction": "in"} if type_ == "line_crossed" else {"zone": "bay", "dwell_s": 700.0}
    return contract.build(
        type=type_,
        stream_name=stream,
        time=1.0e9 + n,
        counts={},
        frame_id=f"f{n}",
        track_id=n,
        cls="person",
        conf=0.8,
        rule="r",
        alert=alert,
        **where,
    )


def drain(stack, url: str, wait: float = 1) -> list[dict]:
    """Every message now on the queue, deleted; a receive that comes back empty after `wait` seconds ends it. Bodies that
    are not JSON (another module on this stack, tests/e2e/test_events.py, leaves invalid ones on the events queue) are
    deleted and left out."""
    sqs, bodies = stack.client("sqs"), []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=int(wait)).get("Messages", [])
        if not got:
            return bodies
        for m in got:
            try:
                bodies.append(json.loads(m["Body"]))
            except ValueError:
                pass
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])


@pytest.fixture
def subscriptions(stack):
    """Removes, after the test, every subscription it added (the events queue's own stays)."""
    yield
    for row in json.loads(notify("ls", "--json").stdout)["data"]["subscriptions"]:
        if not row["events_queue"]:
            assert notify("rm", row["subscription_arn"], "--yes").returncode == 0
    drain(stack, stack.outputs["EventsQueueUrl"], wait=0)


@pytest.fixture
def webhook():
    """An HTTP receiver on localhost: each POST's body, parsed, lands on the returned queue."""
    received: queue.Queue = queue.Queue()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("localhost", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_the_deployed_events_queue_gets_every_event_raw(stack, subscriptions):
    drain(stack, stack.outputs["EventsQueueUrl"], wait=0)
    sent = [an_event(1), an_event(2, "dwell", alert=False)]
    for event in sent:
        published(stack, event)
    got = drain(stack, stack.outputs["EventsQueueUrl"])
    assert sorted(got, key=lambda e: e["track_id"]) == sent  # no filter, and the body is the event itself


def test_a_queue_subscribed_for_one_type_gets_its_alerts_and_nothing_else(stack, subscriptions):
    sqs = stack.client("sqs")
    url = sqs.create_queue(QueueName="notify-e2e-team")["QueueUrl"]
    try:
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        added = notify("add", f"sqs:{arn}", "--type", "line_crossed", "--json")
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout)["data"]["filter"] == {"alert": ["true"], "type": ["line_crossed"]}
        wanted = an_event(1)
        published(stack, wanted)
        published(stack, an_event(2, "dwell"))  # another type
        published(stack, an_event(3, alert=False))  # not an alert
        assert drain(stack, url) == [wanted]
    finally:
        sqs.delete_queue(QueueUrl=url)


def test_a_webhook_gets_the_events_of_its_stream_as_sns_notifications(stack, subscriptions, webhook):
    url, received = webhook
    added = notify("add", url, "--all", "--stream", STREAM)
    assert added.returncode == 0, added.stderr
    assert "unencrypted" in added.stderr and "must confirm" in added.stderr
    wanted = an_event(1, alert=False)
    published(stack, an_event(2, stream="another-cam"))
    published(stack, wanted)
    notification = received.get(timeout=30)  # moto posts while it answers Publish: it is there by now
    assert received.empty()
    assert notification["Type"] == "Notification" and notification["TopicArn"] == stack.outputs["EventsTopicArn"]
    assert json.loads(notification["Message"]) == wanted


def test_ls_and_rm_on_the_local_stack_with_json_envelopes(stack, subscriptions, webhook):
    url, _ = webhook
    added = envelope(notify("add", url, "--type", "dwell", "--class", "car", "--json").stdout, "notify add")
    assert added["topic_arn"] == stack.outputs["EventsTopicArn"] and added["pending_confirmation"] is False  # moto confirms at once
    listed = notify("ls")
    assert listed.returncode == 0 and url in listed.stdout and "(kinase events)" in listed.stdout
    rows = envelope(notify("ls", "--json").stdout, "notify ls")["subscriptions"]
    (mine,) = [row for row in rows if row["endpoint"] == url]
    assert mine["filter"] == {"alert": ["true"], "type": ["dwell"], "class": ["car"]}
    assert mine["subscription_arn"] == added["subscription_arn"]
    assert envelope(notify("rm", url, "--yes", "--json").stdout, "notify rm")["removed"] == mine
    assert [
        row["endpoint"] for row in envelope(notify("ls", "--json").stdout, "notify ls")["subscriptions"] if not row["events_queue"]
    ] == []
