"""Environments never overlap: an environment name has no `-`, so `kinase-<env>-` begins no other environment's
names, and the task role's statements match none of another environment's resources.

The name rule and why: infra/naming.py; the refusal: kinase_cli/options.py check_env.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import re

import pytest

from infra import naming
from kinase_cli.options import ENV_MAX, check_env
from kinase_cli.ui.errors import KinaseError
from kinase_cli.workflows.streams import full_name
from support.cli import kinase, one_error_line

REALISTIC = ["dev", "devx", "prod", "prodeu", "prod2", "staging", "stag", "ci", "c"]
# Every name of up to three characters over an alphabet that can make prefixes of each other.
SMALL = ["".join(p) for n in (1, 2, 3) for p in itertools.product("ab1", repeat=n) if p[0] != "1"]
VALID = sorted(set(REALISTIC + SMALL))

# Every name derived from an environment, by the kind of resource (names of one kind share a namespace).
NAMES = {
    "stack": lambda env: naming.stack_names(env),
    "lease table": lambda env: [naming.lease_table_name(env)],
    "repository": lambda env: [naming.repository_name(env)],
    "task family": lambda env: [naming.worker_family(env), naming.fleet_family(env), naming.gpu_family(env), naming.gpu_fleet_family(env)],
    "capacity provider": lambda env: [naming.gpu_capacity_provider(env)],
    "dashboard": lambda env: [naming.dashboard_name(env)],
    "stream": lambda env: [naming.stream_name(env), full_name(env, "cam1"), full_name(env, "eu-cam9"), full_name(env, "x")],
}


def overlaps(envs: list[str]) -> list[tuple[str, str, str]]:
    """(env a, env b, name of b) where a name of b starts with a's stream prefix or equals a name of a of the same kind."""
    found = []
    for a, b in itertools.permutations(envs, 2):
        for names in NAMES.values():
            for name in names(b):
                if name.startswith(naming.stream_prefix(a)) or name in names(a):
                    found.append((a, b, name))
    return found


@pytest.mark.parametrize("env", VALID)
def test_valid_names_pass(env):
    assert check_env(env) == env


def test_no_environment_prefix_begins_another_environments_names():
    assert all(check_env(env) for env in VALID)
    assert overlaps(VALID) == []


def test_the_overlap_check_finds_what_the_old_rule_allowed():
    """`prod-eu` was a valid name before: `kinase-prod-` began its stream and stack names (the check is not vacuous)."""
    found = overlaps(["prod", "prod-eu"])
    assert ("prod", "prod-eu", "kinase-prod-eu-cam1") in found
    assert ("prod", "prod-eu", "kinase-prod-eu-storage") in found


@pytest.mark.parametrize(
    "bad, suggestion",
    [("prod-eu", "prodeu"), ("dev-x", "devx"), ("Prod-EU", "prodeu"), ("a--b", "ab"), ("x-", "x")],
)
def test_hyphenated_names_are_refused_with_their_hyphen_free_spelling(bad, suggestion):
    with pytest.raises(KinaseError) as refused:
        check_env(bad)
    line = refused.value.line()
    assert "\n" not in line
    assert f"environment name '{bad}' is not valid" in line and f"use '{suggestion}'" in line
    check_env(suggestion)


def test_an_environment_deployed_under_the_old_rule_is_pointed_to_the_migration():
    with pytest.raises(KinaseError) as refused:
        check_env("prod-eu")
    assert "docs/OPERATIONS.md §8" in refused.value.line()


@pytest.mark.parametrize("bad", ["1abc", "../x", "a b", "e" * (ENV_MAX + 1)])
def test_names_without_a_valid_spelling_get_the_rule_only(bad):
    with pytest.raises(KinaseError) as refused:
        check_env(bad)
    assert "use lowercase letters and digits" in refused.value.line()


@pytest.mark.parametrize("command", [("deploy", "--local", "--yes"), ("stream", "ls", "--local"), ("stream", "rm", "cam1", "--yes")])
def test_the_cli_refuses_prod_eu_in_one_line_before_anything_is_created(command, tmp_path):
    home = tmp_path / "home"
    proc = kinase(*command, "--env", "prod-eu", env={"KINASE_HOME": str(home)}, timeout=120)
    line = one_error_line(proc, only=True)
    assert "environment name 'prod-eu' is not valid" in line and "use 'prodeu'" in line
    assert proc.returncode == 2
    assert not home.exists() or not any(home.iterdir())


def _arn(value, env: str) -> str:
    """A resource of a synthesized statement as text: pseudo parameters filled in, imports by their export's value."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(_arn(p, env) for p in parts)
    if "Ref" in value:
        return {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012"}[value["Ref"]]
    if "Fn::ImportValue" in value:
        export = value["Fn::ImportValue"]
        assert export == f"{naming.stack_name(env, 'storage')}:LeaseTableName", export
        return naming.lease_table_name(env)
    raise AssertionError(f"unexpected resource {value}")


def _arns_of(env: str) -> list[str]:
    """ARNs of another environment's streams (stack stream, created ones) and lease table."""
    streams = NAMES["stream"](env)
    return [f"arn:aws:kinesisvideo:eu-west-1:123456789012:stream/{s}/1700000000000" for s in streams] + [
        f"arn:aws:dynamodb:eu-west-1:123456789012:table/{naming.lease_table_name(env)}"
    ]


def test_task_role_matches_no_resource_of_the_other_environment(tmp_path):
    """prod's task role, by its resource patterns (IAM's `*` matches any characters, `/` too), reaches none of
    prodeu's streams or its lease table; a statement with a wildcard over every stream asks for prod's tag."""
    from infra.stacks import build
    from support.cdk import synth_with_nag

    envs = ("prod", "prodeu")
    templates, _ = synth_with_nag(tmp_path, lambda app: [build(app, env) for env in envs])
    for env, other in itertools.permutations(envs):
        compute = templates[naming.stack_name(env, "compute")]
        (role_id,) = [k for k, r in compute["Resources"].items() if r["Type"] == "AWS::IAM::Role" and k.startswith("TaskRole")]
        policies = [r["Properties"] for r in compute["Resources"].values() if r["Type"] == "AWS::IAM::Policy"]
        (policy,) = [p for p in policies if p["Roles"] == [{"Ref": role_id}]]
        checked = 0
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if not any(re.match(r"(kinesisvideo|dynamodb):", action) for action in actions):
                continue
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for pattern in (_arn(r, env) for r in resources):
                checked += 1
                reached = [arn for arn in _arns_of(other) if fnmatch.fnmatchcase(arn, pattern)]
                if reached:
                    assert statement.get("Condition") == {"StringEquals": {f"aws:ResourceTag/{naming.ENV_TAG}": env}}, (pattern, reached)
        assert checked >= 3, json.dumps(policy)
