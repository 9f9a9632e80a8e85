"""Where an AWS environment lives: recorded by `kinase deploy`, used by every later command.

A deploy to `--region eu-west-1 --profile prod` writes `$KINASE_HOME/aws/<env>/target.json`
(account, region, profile, and the input buckets and GPU instance type it deployed, which later
deploys keep unless told otherwise); a later command for that environment that names neither flag uses
them, so `kinase status --env prod` looks where the stacks are instead of in the profile's default
region. A flag (or AWS_REGION / AWS_PROFILE) given explicitly always wins.

Before creating anything, `deploy` checks that the region offers every service the stacks use,
from botocore's endpoint data (no AWS call): Kinesis Video, for one, is missing from several
regions, and a deploy there would fail half-way, after the network and storage stacks.
"""

from __future__ import annotations

import json

from kinase_cli import paths
from kinase_cli.ui.errors import KinaseError

RECORD = "target.json"
# botocore service names of what the stacks create or the worker calls (IAM is global, not listed).
SERVICES = {
    "cloudformation": "CloudFormation",
    "ec2": "VPC",
    "s3": "S3",
    "sqs": "SQS",
    "kinesisvideo": "Kinesis Video Streams",
    "ecr": "ECR",
    "ecs": "ECS",
    "logs": "CloudWatch Logs",
    "cloudwatch": "CloudWatch",
}


def recorded(env: str, local: bool = False) -> dict:
    """{account, region, profile, input_buckets} of the environment's last deploy; {} when there was none."""
    try:
        data = json.loads((paths.env_dir(env, local) / RECORD).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(
    env: str,
    account: str,
    region: str,
    profile: str | None,
    input_buckets: list[str] = (),
    gpu_instance_type: str | None = None,
    local: bool = False,
) -> None:
    path = paths.env_dir(env, local) / RECORD
    data = {
        "account": account,
        "region": region,
        "profile": profile,
        "input_buckets": sorted(input_buckets),
        "gpu_instance_type": gpu_instance_type,
    }
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def resolve(env: str, profile: str | None, region: str | None) -> tuple[str | None, str | None]:
    """The profile and region to use: the given ones, else the recorded ones of the environment."""
    remembered = recorded(env)
    return profile or remembered.get("profile"), region or remembered.get("region")


def missing_services(region: str) -> list[str]:
    """botocore service names of SERVICES that `region` does not offer."""
    import boto3

    session = boto3.Session()
    partitions = session.get_available_partitions()
    missing = []
    for service in SERVICES:
        offered = {r for partition in partitions for r in session.get_available_regions(service, partition_name=partition)}
        if region not in offered:
            missing.append(service)
    return missing


# Region name prefixes by continent: a region of the same continent is nearer than one of another.
_CONTINENTS = ({"us", "ca", "mx", "sa"}, {"eu", "me", "il", "af"}, {"ap", "cn"})


def nearest_regions(region: str, candidates: set[str], n: int = 3) -> list[str]:
    """Up to `n` of `candidates` nearest `region` by their names: the same geography (eu-, us-) first, then
    the same continent, then the same direction (west, north): eu-north-1's are eu- regions, not me-south-1."""
    area, _, rest = region.partition("-")
    direction = rest.partition("-")[0]
    continent = next((c for c in _CONTINENTS if area in c), {area})

    def distance(other: str) -> tuple:
        other_area, _, other_rest = other.partition("-")
        return (other_area != area, other_area not in continent, other_rest.partition("-")[0] != direction, other)

    return sorted(candidates, key=distance)[:n]


def check_services(region: str) -> None:
    """One line, before any stack is created, when the region lacks a service the stacks use."""
    missing = missing_services(region)
    if not missing:
        return
    import boto3

    everywhere = set.intersection(*(set(boto3.Session().get_available_regions(s)) for s in SERVICES))
    nearest = nearest_regions(region, everywhere)
    names = ", ".join(f"{SERVICES[s]} ({s})" for s in missing)
    raise KinaseError(
        f"region {region} does not offer {names}, which the kinase stacks use; nothing was created",
        f"deploy to a region that does, e.g. `--region {nearest[0]}` ({', '.join(nearest)} offer every service)",
    )
