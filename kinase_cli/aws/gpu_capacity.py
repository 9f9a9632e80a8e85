"""GPU capacity on a real account: what `deploy --gpu` checks before creating anything, and why GPU
instances do not start afterwards.

A GPU deploy that cannot work fails late and quietly on AWS: the stacks deploy, a GPU task waits in
PROVISIONING, and the reason sits in the Auto Scaling group's activity history (no capacity for the
type in a zone, a vCPU quota of 0). So before anything is created `preflight` checks, with the
EC2 and Service Quotas APIs, that the instance type exists, is an x86_64 type with an NVIDIA GPU
(the ECS GPU AMI is x86_64 and NVIDIA only) big enough for the GPU task (infra/naming.py), is
offered in every zone of the environment's subnets, and that the account's On-Demand quota for its
family covers the group's instances; each refusal names what to choose instead. `failed_activities`
is what `kinase status` shows of the group afterwards.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from infra import naming
from kinase_cli.aws.outputs import stack_status
from kinase_cli.aws.target import Target
from kinase_cli.ui import console
from kinase_cli.ui.errors import KinaseError
from worker.contract import iso
from worker.retry import error_code

# Service Quotas codes of the On-Demand vCPU quotas, by instance family letter ("G and VT" covers g*).
QUOTAS = {
    "g": ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    "p": ("L-417A185B", "Running On-Demand P instances"),
}
# Service Quotas answers for a quota it cannot show: kinase warns and goes on (the instances would
# then fail to start, which `kinase status` shows).
UNREADABLE_QUOTA = ("AccessDeniedException", "NoSuchResourceException", "IllegalArgumentException", "ServiceException")
SUGGESTIONS = 5
ACTIVITY_WINDOW = timedelta(hours=1)  # older failures are history, not why a task is PROVISIONING now
CAUSE_CHARS = 160


def preflight(tgt: Target, instance_type: str) -> None:
    """Refuse (one KinaseError line naming what to choose instead) a GPU instance type that cannot work in `tgt`'s region.

    On the local stack the type and its zones are checked against moto's EC2 data; the quota is not
    (the local stack runs no instances)."""
    ec2 = tgt.client("ec2")
    zones = subnet_zones(tgt)
    where = f"{tgt.region_name} ({', '.join(zones)})"
    chosen = _describe(ec2, [instance_type]).get(instance_type)
    if chosen is None:
        raise KinaseError(f"{instance_type} is not an EC2 instance type in {tgt.region_name}", _instead(ec2, zones, where))
    problem = unsuitable(chosen)
    if problem:
        raise KinaseError(f"{instance_type} {problem}", _instead(ec2, zones, where))
    offered = _offered(ec2, zones)
    missing = [z for z in zones if instance_type not in offered.get(z, set())]
    if missing:
        raise KinaseError(f"{instance_type} is not offered in {', '.join(missing)}", _instead(ec2, zones, where, offered))
    if not tgt.local:
        _check_quota(tgt, chosen)


def subnet_zones(tgt: Target) -> list[str]:
    """The zones of the environment's subnets; before its network stack exists, the zones that stack will
    take: the region's first MAX_AZS zones in alphabetical order, as Fn::GetAZs lists them."""
    ec2 = tgt.client("ec2")
    network = stack_status(tgt, "network") or {}
    subnets = next((o["OutputValue"] for o in network.get("Outputs", []) if o["OutputKey"] == "SubnetIds"), "")
    if subnets:
        found = ec2.describe_subnets(SubnetIds=[s for s in subnets.split(",") if s])["Subnets"]
        return sorted({s["AvailabilityZone"] for s in found})
    filters = [{"Name": "state", "Values": ["available"]}, {"Name": "zone-type", "Values": ["availability-zone"]}]
    names = sorted(z["ZoneName"] for z in ec2.describe_availability_zones(Filters=filters)["AvailabilityZones"])
    return names[: naming.MAX_AZS]


def unsuitable(described: dict) -> str | None:
    """Why an instance type (DescribeInstanceTypes entry) cannot run the GPU task; None when it can."""
    gpus = described.get("GpuInfo", {}).get("Gpus", [])
    if not gpus:
        return "has no GPU"
    makers = sorted({g.get("Manufacturer", "?") for g in gpus})
    if makers != ["NVIDIA"]:
        return f"has a {'/'.join(makers)} GPU; the ECS GPU image drives NVIDIA GPUs only"
    architectures = described.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
    if "x86_64" not in architectures:
        return f"is {'/'.join(architectures)}; the ECS GPU image is x86_64"
    cpu = described["VCpuInfo"]["DefaultVCpus"] * 1024 - naming.GPU_HOST_CPU
    memory = described["MemoryInfo"]["SizeInMiB"] - naming.GPU_HOST_MEMORY_MIB
    if cpu < naming.GPU_TASK_CPU or memory < naming.GPU_TASK_MEMORY_MIB:
        return (
            f"is too small: {described['VCpuInfo']['DefaultVCpus']} vCPU and {described['MemoryInfo']['SizeInMiB'] // 1024} GiB, "
            f"the GPU task needs {naming.GPU_TASK_CPU / 1024:g} vCPU and {naming.GPU_TASK_MEMORY_MIB / 1024:g} GiB besides the ECS agent"
        )
    return None


def _describe(ec2, names: list[str]) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for start in range(0, len(names), 100):
        try:
            page = ec2.describe_instance_types(InstanceTypes=names[start : start + 100])
        except Exception as exc:  # botocore ClientError
            if error_code(exc) == "InvalidInstanceType" and len(names) == 1:
                return {}
            raise
        found.update({t["InstanceType"]: t for t in page["InstanceTypes"]})
    return found


def _offered(ec2, zones: list[str]) -> dict[str, set[str]]:
    """Zone -> the instance types offered there."""
    offered: dict[str, set[str]] = {z: set() for z in zones}
    pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
        LocationType="availability-zone", Filters=[{"Name": "location", "Values": zones}]
    )
    for offering in (o for page in pages for o in page["InstanceTypeOfferings"]):
        offered.setdefault(offering["Location"], set()).add(offering["InstanceType"])
    return offered


def _instead(ec2, zones: list[str], where: str, offered: dict[str, set[str]] | None = None) -> str:
    """The hint of a refusal: the smallest suitable types offered in every zone, or another region."""
    offered = offered if offered is not None else _offered(ec2, zones)
    everywhere = set.intersection(*(offered.get(z, set()) for z in zones)) if zones else set()
    candidates = _describe(ec2, sorted(t for t in everywhere if t[0] in QUOTAS))
    fitting = sorted(
        (t for t in candidates.values() if unsuitable(t) is None),
        key=lambda t: (t["VCpuInfo"]["DefaultVCpus"], t["MemoryInfo"]["SizeInMiB"], t["InstanceType"]),
    )
    if not fitting:
        return f"no x86 NVIDIA GPU type big enough is offered in every zone of {where}: choose another --region"
    names = ", ".join(t["InstanceType"] for t in fitting[:SUGGESTIONS])
    return f"x86 NVIDIA GPU types that fit, offered in every zone of {where}: {names}; choose one with --instance-type"


def _check_quota(tgt: Target, described: dict) -> None:
    instance_type = described["InstanceType"]
    code, name = QUOTAS[instance_type[0]]
    need = naming.GPU_MAX_INSTANCES * described["VCpuInfo"]["DefaultVCpus"]
    try:
        value = tgt.client("service-quotas").get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
    except Exception as exc:  # botocore ClientError
        if error_code(exc) not in UNREADABLE_QUOTA:
            raise
        console.warn(
            f"could not read quota {code} ({name}) in {tgt.region_name}: {error_code(exc)}; "
            f"{naming.GPU_MAX_INSTANCES} × {instance_type} (the workers and room to roll them) need {need} vCPUs of it, or the instances will not start "
            "(`kinase status` shows the group's failed launches)"
        )
        return
    if value < need:
        raise KinaseError(
            f"quota {code} ({name}) is {value:g} vCPUs in {tgt.region_name}; {naming.GPU_MAX_INSTANCES} × {instance_type} (the workers and room to roll them) need {need}",
            f"request an increase in Service Quotas: aws service-quotas request-service-quota-increase --service-code ec2 "
            f"--quota-code {code} --desired-value {need} --region {tgt.region_name}" + (f" --profile {tgt.profile}" if tgt.profile else ""),
        )


def failed_activities(tgt: Target, capacity_provider: str, now: datetime | None = None) -> dict:
    """The GPU capacity provider's Auto Scaling group and its failed or cancelled launches since its last
    successful one, within ACTIVITY_WINDOW, newest first, each cause cut to its first sentence."""
    ecs = tgt.client("ecs")
    providers = ecs.describe_capacity_providers(capacityProviders=[capacity_provider]).get("capacityProviders", [])
    arn = providers[0].get("autoScalingGroupProvider", {}).get("autoScalingGroupArn", "") if providers else ""
    group = arn.split("autoScalingGroupName/", 1)[1] if "autoScalingGroupName/" in arn else None
    report = {"capacity_provider": capacity_provider, "group": group, "failed_activities": []}
    if group is None:
        return report
    since = (now or datetime.now(timezone.utc)) - ACTIVITY_WINDOW
    activities = tgt.client("autoscaling").describe_scaling_activities(AutoScalingGroupName=group, MaxRecords=20)["Activities"]
    for activity in sorted(activities, key=lambda a: a["StartTime"], reverse=True):
        if activity["StatusCode"] == "Successful" or activity["StartTime"] < since:
            break
        if activity["StatusCode"] in ("Failed", "Cancelled"):
            report["failed_activities"].append(
                {"status": activity["StatusCode"], "started_at": iso(activity["StartTime"]), "cause": short_cause(activity)}
            )
    return report


def short_cause(activity: dict) -> str:
    text = " ".join((activity.get("StatusMessage") or activity.get("Description") or "").split())
    sentence = text.split(". ", 1)[0].rstrip(".")
    return sentence if len(sentence) <= CAUSE_CHARS else sentence[: CAUSE_CHARS - 1] + "…"
