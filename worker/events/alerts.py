"""Which events are alerts: the stream's alert rules (worker.rules.Alert) mark them.

Every event goes to the environment's events topic; an alert is one with `alert: true` (and the
SNS attribute alert=true), which `kinase notify` subscriptions filter on. A rule's cooldown holds
per rule and stream: after it alerts, events it matches within `cooldown_s` are not alerts, so one
person seen at 5 fps, or a crowd crossing a line, is one notification a minute, not hundreds.
Cooldowns run on the events' own times (the media clock), so a replay marks the same events.
"""

from __future__ import annotations

import json

from worker.rules import Alert


def _key(rule: Alert) -> str:
    """A rule's identity across rules swaps and restarts: its content (alert rules have no names)."""
    return json.dumps([rule.events, rule.classes, rule.min_conf, rule.cooldown_s])


class Alerts:
    """A stream's alert rules and, per rule, when it last alerted."""

    def __init__(self, rules: tuple[Alert, ...]):
        self._rules: tuple[tuple[str, Alert], ...] = ()
        self._last: dict[str, float] = {}
        self.set_rules(rules)

    def set_rules(self, rules: tuple[Alert, ...]) -> None:
        """New rules; one that is unchanged keeps its cooldown."""
        self._rules = tuple((_key(rule), rule) for rule in rules)
        keys = {key for key, _ in self._rules}
        self._last = {key: t for key, t in self._last.items() if key in keys}

    def matches(self, rule: Alert, event: dict) -> bool:
        """The rule's events, classes and minimum confidence (an event without a class, a camera's,
        matches only rules without classes; one without a confidence only rules without min_conf)."""
        if event["type"] not in rule.events:
            return False
        if rule.classes is not None and event.get("class") not in rule.classes:
            return False
        conf = event.get("conf")
        return rule.min_conf <= 0 or (conf is not None and conf >= rule.min_conf)

    def mark(self, event: dict, time: float) -> bool:
        """Set the event's `alert`: true when a rule matches it and is out of its cooldown at `time`
        (each such rule's cooldown starts again); returns it."""
        alert = False
        for key, rule in self._rules:
            if self.matches(rule, event):
                last = self._last.get(key)
                if last is None or time - last >= rule.cooldown_s:
                    self._last[key] = time
                    alert = True
        event["alert"] = alert
        return alert

    def snapshot(self) -> dict[str, float]:
        return dict(self._last)

    def restore(self, state: dict[str, float]) -> None:
        keys = {key for key, _ in self._rules}
        self._last = {key: float(t) for key, t in state.items() if key in keys}
