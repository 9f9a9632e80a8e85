"""Stack outputs: only the keys the CLI reads (`naming.OUTPUTS`), a few exported for the compute stack.

Exports carry fixed names (`<stack>:<key>`) and are imported by name instead of through CDK's
automatic cross-stack references, so stack outputs hold exactly the documented keys and the
cdk-nag findings about them can be acknowledged by a stable id.
"""

from __future__ import annotations

import aws_cdk as cdk

from infra import naming


def export_name(stack_name: str, key: str) -> str:
    return f"{stack_name}:{key}"


def output(stack: cdk.Stack, key: str, value: str, *, export: bool = False) -> cdk.CfnOutput:
    if naming.OUTPUTS.get(key) is None:
        raise ValueError(f"{key} is not a kinase output (infra/naming.py:OUTPUTS)")
    return cdk.CfnOutput(stack, key, value=value, export_name=export_name(stack.stack_name, key) if export else None)


def imported(env: str, key: str) -> str:
    return cdk.Fn.import_value(export_name(naming.stack_name(env, naming.OUTPUTS[key]), key))
