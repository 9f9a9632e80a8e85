"""The one stack-outputs reader: queue URLs, bucket and cluster names come from here, never from the user."""

from __future__ import annotations

from infra import naming
from kinase_cli.aws.target import Target
from kinase_cli.ui.errors import KinaseError


class StackOutputs(dict):
    """Outputs of all kinase stacks of one environment, merged into one mapping."""

    def __init__(self, values: dict[str, str], target: Target):
        super().__init__(values)
        self.target = target

    def __missing__(self, key: str) -> str:
        stack = self.target.stack_name(naming.OUTPUTS.get(key, "?"))
        raise KinaseError(
            f"stack output {key} is missing (stack {stack} not deployed?)",
            f"run `kinase deploy{self.target.hint_flag()}`",
        )

    @property
    def subnets(self) -> list[str]:
        return [s for s in self["SubnetIds"].split(",") if s]


def stack_status(target: Target, concern: str) -> dict | None:
    """DescribeStacks for one stack; None when it does not exist."""
    name = target.stack_name(concern)
    cfn = target.client("cloudformation")
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except Exception as exc:  # botocore.exceptions.ClientError, imported lazily
        response = getattr(exc, "response", None)
        if response and "does not exist" in response.get("Error", {}).get("Message", ""):
            return None
        raise
    return stacks[0] if stacks else None


def read(target: Target, required: tuple[str, ...] = ()) -> StackOutputs:
    """Read every stack's outputs; `required` names the concerns that must be deployed."""
    values: dict[str, str] = {}
    missing = []
    for concern in naming.CONCERNS:
        stack = stack_status(target, concern)
        if stack is None or stack.get("StackStatus", "").startswith("DELETE"):
            missing.append(concern)
            continue
        for out in stack.get("Outputs", []):
            values[out["OutputKey"]] = out["OutputValue"]
    needed = [c for c in (required or ()) if c in missing]
    if needed:
        raise KinaseError(
            f"stack {target.stack_name(needed[0])} is not deployed",
            f"run `kinase deploy{target.hint_flag()}`",
        )
    return StackOutputs(values, target)
