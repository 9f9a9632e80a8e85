"""Judging IAM requests (support/iam_actions.py) against policy statements, as AWS's evaluation logic does.

IAM User Guide, "Policy evaluation logic": an explicit Deny wins, else an Allow whose Action,
Resource and every Condition match, else the implicit deny. Only what the kinase policies use is
evaluated: Action/NotAction and Resource with `*`/`?` wildcards, and the condition operators in
OPERATORS (with `...IfExists`); any other element or operator raises Unsupported, so a policy the
checker cannot judge fails the test instead of being allowed.

`statements_of(template, role_prefix, resolve)` reads a role's inline policies from a CloudFormation
template with the intrinsic functions resolved to the values the deployed stack has.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from support.iam_actions import Request


class Unsupported(ValueError):
    """A policy element or condition operator the checker does not evaluate."""


def wildcard_match(pattern: str, value: str, *, case: bool = True) -> bool:
    """IAM wildcards: `*` any run of characters (slashes included), `?` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _arn_like(pattern: str, value: str) -> bool:
    """ArnLike: each of the six colon-separated parts matched on its own."""
    p, v = pattern.split(":", 5), value.split(":", 5)
    return len(p) == len(v) == 6 and all(wildcard_match(a, b) for a, b in zip(p, v, strict=True))


OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda want, got: want == got,
    "StringLike": wildcard_match,
    "Bool": lambda want, got: want.lower() == str(got).lower(),
    "ArnLike": _arn_like,
    "ArnEquals": _arn_like,
}


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _condition_holds(conditions: dict, context: dict) -> bool:
    for operator, keys in conditions.items():
        base, if_exists = (operator[: -len("IfExists")], True) if operator.endswith("IfExists") else (operator, False)
        if base not in OPERATORS:
            raise Unsupported(f"condition operator {operator} is not evaluated by the checker")
        for key, wanted in keys.items():
            if key not in context:
                if if_exists:
                    continue
                return False
            got = context[key]
            if not any(OPERATORS[base](str(w), str(got)) for w in _listed(wanted)):
                return False
    return True


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    by: tuple[str, ...]  # the Sids of the Allow statements that match (or of the Deny that refused)


def _applies(statement: dict, action: str, resource: str, context: dict) -> bool:
    unknown = set(statement) - {"Sid", "Effect", "Action", "NotAction", "Resource", "Condition"}
    if unknown:
        raise Unsupported(f"statement {statement.get('Sid')}: {sorted(unknown)} not evaluated by the checker")
    if "Action" in statement:
        if not any(wildcard_match(a, action, case=False) for a in _listed(statement["Action"])):
            return False
    elif any(wildcard_match(a, action, case=False) for a in _listed(statement["NotAction"])):
        return False
    if not any(wildcard_match(r, resource) for r in _listed(statement["Resource"])):
        return False
    return _condition_holds(statement.get("Condition", {}), context)


def evaluate(statements: Iterable[dict], request: Request) -> Verdict:
    """Allowed when every resource of the request is allowed and none is denied."""
    statements = list(statements)
    used: set[str] = set()
    for resource in request.resources:
        matching = [s for s in statements if _applies(s, request.action, resource, request.context)]
        denies = [s.get("Sid", "?") for s in matching if s["Effect"] == "Deny"]
        if denies:
            return Verdict(False, tuple(denies))
        allows = [s.get("Sid", "?") for s in matching if s["Effect"] == "Allow"]
        if not allows:
            return Verdict(False, ())
        used.update(allows)
    return Verdict(True, tuple(sorted(used)))


def resolver(*, region: str, account: str, exports: dict[str, str], physical: dict[str, str]) -> Callable[[object], object]:
    """Resolves Ref, Fn::ImportValue, Fn::Join, Fn::Select, Fn::Split to the deployed stack's values."""
    pseudo = {"AWS::Partition": "aws", "AWS::Region": region, "AWS::AccountId": account, "AWS::URLSuffix": "amazonaws.com"}

    def resolve(node):
        if isinstance(node, list):
            return [resolve(n) for n in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((fn, arg),) = node.items()
            if fn == "Ref":
                return pseudo.get(arg) or physical[arg]
            if fn == "Fn::ImportValue":
                return exports[resolve(arg)]
            if fn == "Fn::Join":
                sep, parts = arg
                return sep.join(str(resolve(p)) for p in parts)
            if fn == "Fn::Select":
                index, items = arg
                return resolve(items)[int(resolve(index))]
            if fn == "Fn::Split":
                sep, text = arg
                return resolve(text).split(sep)
            if fn.startswith("Fn::"):
                raise Unsupported(f"{fn} is not resolved by the checker")
        return {k: resolve(v) for k, v in node.items()}

    return resolve


def statements_of(template: dict, role_prefix: str, resolve: Callable[[object], object]) -> list[dict]:
    """The statements of every inline policy (AWS::IAM::Policy) attached to the role whose logical id starts with `role_prefix`."""
    (role_id,) = [k for k, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role" and k.startswith(role_prefix)]
    statements = []
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in resource["Properties"]["Roles"]:
            statements += resolve(resource["Properties"]["PolicyDocument"]["Statement"])
    return statements
