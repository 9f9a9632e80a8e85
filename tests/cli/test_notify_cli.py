"""`kinase notify add/ls/rm` against moto's SNS and SQS in this process (the stack outputs stubbed).

moto's SNS evaluates filter policies on message attributes and fans out to SQS, so the filter a
subscription gets and the attributes workers publish (worker/events/attributes.py) are checked
together here; tests/e2e/test_notify.py does the same through a deployed local stack.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from kinase_cli.aws import outputs
from kinase_cli.main import app
from kinase_cli.ui import console as ui_console
from worker.events import contract
from worker.events.attributes import message_attributes

REGION = "eu-west-1"
ENV_VARS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}


class Aws:
    def __init__(self):
        import boto3

        self.sns = boto3.client("sns", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.topic = self.sns.create_topic(Name="kinase-dev-storage-EventsTopic")["TopicArn"]
        self.events_queue = self.sqs.create_queue(QueueName="kinase-dev-storage-EventsQueue")["QueueUrl"]
        self.sns.subscribe(
            TopicArn=self.topic, Protocol="sqs", Endpoint=self.arn(self.events_queue), Attributes={"RawMessageDelivery": "true"}
        )

    def arn(self, url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def publish(self, event: dict) -> None:
        self.sns.publish(TopicArn=self.topic, Message=contract.dumps(event), MessageAttributes=message_attributes(event))

    def received(self, url: str) -> list[dict]:
        messages = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]


@pytest.fixture
def aws(monkeypatch):
    from moto import mock_aws

    for key, value in ENV_VARS.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS_VIDEO", "KINASE_LOCAL"):
        monkeypatch.delenv(key, raising=False)
    with mock_aws():
        stack = Aws()
        values = {"EventsTopicArn": stack.topic, "EventsQueueUrl": stack.events_queue}
        monkeypatch.setattr(outputs, "read", lambda target, required=(): outputs.StackOutputs(values, target))
        yield stack


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch):
    """kinase's consoles take their width when they are made (at import), so COLUMNS given to one invocation does
    not reach them: these tests read whole table rows and sentences, so they set the width on the consoles."""
    for console in (ui_console.out, ui_console.err):
        monkeypatch.setattr(console, "width", 200)


def run(*args: str):
    return CliRunner().invoke(app, ["notify", *args])


def data(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["data"]


def crossing(*, alert: bool, type_: str = "line_crossed", cls: str = "person", stream: str = "door") -> dict:
    where = {"line": "entrance", "direction": "in"} if type_ == "line_crossed" else {"zone": "bay"}
    extra = {"dwell_s": 700.0} if type_ == "dwell" else {}
    return contract.build(
        type=type_,
        stream_name=stream,
        time=1.0e9,
        counts={},
        frame_id="f1",
        track_id=7,
        cls=cls,
        conf=0.9,
        rule="r",
        alert=alert,
        **where,
        **extra,
    )


def test_add_subscribes_to_alerts_only_by_default_and_says_email_must_confirm(aws):
    result = run("add", "email:ops@example.com", "--json")
    created = data(result)
    assert created["protocol"] == "email" and created["endpoint"] == "email:ops@example.com"
    assert created["filter"] == {"alert": ["true"]}
    attrs = aws.sns.get_subscription_attributes(SubscriptionArn=created["subscription_arn"])["Attributes"]
    assert json.loads(attrs["FilterPolicy"]) == {"alert": ["true"]} and attrs["FilterPolicyScope"] == "MessageAttributes"
    assert "confirmation message" in result.stderr and "nothing is delivered until" in result.stderr


def test_filters_narrow_by_type_stream_and_class_and_all_widens_to_every_event(aws):
    narrow = data(run("add", "https://hooks.example.com/a", "--type", "line_crossed", "--type", "dwell", "--stream", "door", "--json"))
    assert narrow["filter"] == {"alert": ["true"], "type": ["dwell", "line_crossed"], "stream": ["door"]}
    every = data(run("add", "https://hooks.example.com/b", "--all", "--json"))
    assert every["filter"] is None
    attrs = aws.sns.get_subscription_attributes(SubscriptionArn=every["subscription_arn"])["Attributes"]
    assert "FilterPolicy" not in attrs
    by_class = data(run("add", "https://hooks.example.com/c", "--all", "--class", "car", "--json"))
    assert by_class["filter"] == {"class": ["car"]}


def test_a_queue_gets_only_the_events_its_filter_names_and_the_events_queue_gets_all(aws):
    mine = aws.sqs.create_queue(QueueName="my-alerts")["QueueUrl"]
    result = run("add", f"sqs:{aws.arn(mine)}", "--type", "line_crossed")
    assert result.exit_code == 0, result.output
    assert "sns.amazonaws.com" in result.stderr and aws.topic in result.stderr  # what the queue's policy must allow
    aws.publish(crossing(alert=True))
    aws.publish(crossing(alert=True, type_="dwell"))
    aws.publish(crossing(alert=False))
    got = aws.received(mine)
    assert [(e["type"], e["alert"]) for e in got] == [("line_crossed", True)]
    assert got[0] == crossing(alert=True)  # raw delivery: the body is the event itself
    assert sorted((e["type"], e["alert"]) for e in aws.received(aws.events_queue)) == [
        ("dwell", True),
        ("line_crossed", False),
        ("line_crossed", True),
    ]


def test_a_class_filter_never_matches_a_camera_event(aws):
    mine = aws.sqs.create_queue(QueueName="cars")["QueueUrl"]
    assert run("add", f"sqs:{aws.arn(mine)}", "--all", "--class", "car").exit_code == 0
    offline = contract.camera("camera_offline", "door", 1.0e9)
    aws.sns.publish(TopicArn=aws.topic, Message=contract.dumps(offline), MessageAttributes=message_attributes(offline))
    aws.publish(crossing(alert=False, cls="car"))
    assert [(e["type"], e["class"]) for e in aws.received(mine)] == [("line_crossed", "car")]


def test_ls_shows_every_subscription_with_its_filter_and_marks_the_events_queue(aws):
    run("add", "email:ops@example.com", "--stream", "door")
    listed = data(run("ls", "--json"))
    assert listed["topic_arn"] == aws.topic
    rows = {row["endpoint"]: row for row in listed["subscriptions"]}
    assert rows["email:ops@example.com"]["filter"] == {"alert": ["true"], "stream": ["door"]}
    (own,) = [row for row in rows.values() if row["events_queue"]]
    assert own["protocol"] == "sqs" and own["filter"] is None
    table = run("ls")
    assert table.exit_code == 0
    for text in ("protocol", "pending confirmation", "email:ops@example.com", "alert=true stream=door", "(kinase events)", "every event"):
        assert text in table.stdout, table.stdout


def test_rm_asks_first_then_removes_by_endpoint_or_subscription_arn(aws):
    first = data(run("add", "email:ops@example.com", "--json"))
    second = data(run("add", "https://hooks.example.com/x", "--json"))
    refused = run("rm", "email:ops@example.com")  # no terminal to ask on
    assert refused.exit_code != 0 and "not confirmed" in refused.stderr
    assert data(run("rm", "email:ops@example.com", "--yes", "--json"))["removed"]["subscription_arn"] == first["subscription_arn"]
    assert run("rm", second["subscription_arn"], "-y").exit_code == 0
    assert [row["endpoint"] for row in data(run("ls", "--json"))["subscriptions"] if not row["events_queue"]] == []


def test_rm_leaves_the_stacks_own_events_queue_subscription(aws):
    result = run("rm", f"sqs:{aws.arn(aws.events_queue)}", "--yes")
    assert result.exit_code == 1 and "the stack's own subscription" in result.stderr
    assert len(data(run("ls", "--json"))["subscriptions"]) == 1


def test_subscribing_an_endpoint_twice_is_refused_rather_than_changing_its_filter(aws):
    assert run("add", "email:ops@example.com").exit_code == 0
    again = run("add", "email:ops@example.com", "--all")
    assert again.exit_code == 1 and "already subscribed" in again.stderr


def test_rm_of_an_endpoint_never_subscribed_is_one_error_line(aws):
    result = run("rm", "email:nobody@example.com", "--yes")
    assert result.exit_code == 1 and "no subscription of email:nobody@example.com" in result.stderr


@pytest.mark.parametrize(
    "endpoint, why",
    [
        ("mailto:ops@example.com", "bad endpoint"),
        ("email:not-an-address", "bad e-mail endpoint"),
        ("https://", "bad webhook endpoint"),
        ("https://host with space/", "bad webhook endpoint"),
        ("sqs:arn:aws:s3:::bucket", "bad queue endpoint"),
        ("sqs:https://sqs.eu-west-1.amazonaws.com/123456789012/q", "bad queue endpoint"),
        ("ops\x1b[2J@example.com", "bad endpoint"),
    ],
)
def test_a_bad_endpoint_is_one_error_line_before_any_aws_call(endpoint, why, monkeypatch):
    monkeypatch.setattr(outputs, "read", lambda *a, **k: pytest.fail("no AWS call for a bad endpoint"))
    result = run("add", endpoint)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {why}") and "\x1b" not in line


def test_an_unknown_event_type_or_a_filter_too_wide_for_sns_is_refused(monkeypatch):
    monkeypatch.setattr(outputs, "read", lambda *a, **k: pytest.fail("no AWS call for a bad filter"))
    unknown = run("add", "email:ops@example.com", "--type", "line_crosed")
    assert unknown.exit_code == 2 and "unknown event type 'line_crosed'" in unknown.stderr and "line_crossed" in unknown.stderr
    classes = [arg for n in range(16) for arg in ("--class", f"c{n}")]
    streams = [arg for n in range(10) for arg in ("--stream", f"s{n}")]
    wide = run("add", "email:ops@example.com", *classes, *streams)
    assert wide.exit_code == 2 and "160 combinations" in wide.stderr and "150" in wide.stderr


def test_attributes_are_strings_and_absent_when_the_event_has_no_value():
    attrs = message_attributes(crossing(alert=True))
    assert {name: a["StringValue"] for name, a in attrs.items()} == {
        "type": "line_crossed",
        "stream": "door",
        "class": "person",
        "rule": "r",
        "alert": "true",
    }
    assert {a["DataType"] for a in attrs.values()} == {"String"}
    camera = message_attributes(contract.camera("camera_online", "door", 1.0e9))
    assert set(camera) == {"type", "stream", "alert"} and camera["alert"]["StringValue"] == "false"
