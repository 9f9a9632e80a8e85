"""The SNS message attributes an event is published with: what `kinase notify` subscriptions filter on.

Subscribers of the environment's events topic (infra/stacks/events.py) choose their events with
filter policies on these attributes, never on the body, so a filter costs no parsing of the event
and works for every protocol. All are String attributes (SNS filter policies match strings
exactly); an attribute the event has no value for is left out, so a policy naming it does not match
(a `class` filter never matches camera_offline).
"""

from __future__ import annotations

TYPE, STREAM, CLASS, RULE, ALERT = "type", "stream", "class", "rule", "alert"
NAMES = (TYPE, STREAM, CLASS, RULE, ALERT)
TRUE = "true"  # `alert` is "true" or "false"


def message_attributes(event: dict) -> dict[str, dict[str, str]]:
    """SNS Publish's MessageAttributes for a valid `kinase.event/1` event (worker/events/contract.py)."""
    values = {
        TYPE: event["type"],
        STREAM: event["stream_name"],
        CLASS: event.get("class"),
        RULE: event.get("rule"),
        ALERT: TRUE if event["alert"] else "false",
    }
    return {name: {"DataType": "String", "StringValue": str(value)} for name, value in values.items() if value not in (None, "")}
