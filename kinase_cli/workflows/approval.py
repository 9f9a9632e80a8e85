"""What `kinase deploy` shows and asks before it changes an environment on AWS.

The security-relevant changes are cdk's own security diff (`cdk diff --security-only`): IAM
statements, managed policies and security-group rules, old against new. When they broaden access
(a new grant, a wider principal, a new ingress or egress rule), deploy shows them with the
estimated running cost and asks, with the one confirmation rule (ui/confirm.py): on a terminal it
asks; without one it refuses unless `--yes`. Narrowing changes and changes to anything else go
ahead without a question, as with `cdk deploy --require-approval broadening`. The local stack
never asks. A first deploy is all new grants, so it is shown and asked too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kinase_cli.aws.target import Target
from kinase_cli.runners import cdk
from kinase_cli.ui import console
from kinase_cli.ui.confirm import confirm
from kinase_cli.ui.errors import KinaseError

QUESTION = "Apply these security changes (IAM statements, security-group rules) shown above?"
_NOISE = ("Number of stacks with differences", "✨", "Stack ")


@dataclass(frozen=True)
class SecurityDiff:
    broadening: bool
    lines: list[str]


def security_diff(tgt: Target, context: Mapping[str, str]) -> SecurityDiff:
    """cdk's security diff of every stack against what is deployed; `broadening` from cdk's own verdict."""
    lines: list[str] = []
    args = ["diff", "--security-only", "--fail-on", "broadening", "--method", "template"]
    result = cdk.run(tgt, args, context=context, on_line=lines.append, what="cdk diff --security-only", check=False)
    if result.returncode not in (0, 1):
        last = " | ".join(s.strip() for s in lines[-6:] if s.strip())[-400:]
        raise KinaseError(f"cdk diff --security-only failed (exit {result.returncode}): {last}", "run `kinase diff` to see why")
    return SecurityDiff(broadening=result.returncode == 1, lines=lines)


def approve(tgt: Target, context: Mapping[str, str], *, yes: bool, cost_line: str) -> SecurityDiff | None:
    """Show the broadening security changes and the cost, then ask; returns the diff (None on the local stack)."""
    if tgt.local:
        return None
    with console.err.status("cdk diff --security-only (IAM statements, security groups)"):
        diff = security_diff(tgt, context)
    if not diff.broadening:
        console.info("no broadening security changes (IAM statements, security-group rules)")
        return diff
    for line in diff.lines:
        if line.strip() and not line.strip().startswith(_NOISE):
            console.err.print(line, markup=False, highlight=False, soft_wrap=True)
    console.info(f"running cost: {cost_line}")
    confirm(QUESTION, yes)
    return diff
