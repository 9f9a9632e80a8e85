"""An ESTIMATE of what Fargate tasks cost, from a small price table kept in code.

Fargate bills the task's requested vCPU and memory per second (one-minute minimum), whatever the
container actually uses. The table holds on-demand Linux/x86 prices (the worker image is built for
linux/amd64); it is not a bill: Spot, Savings Plans, public IPv4 addresses, logs, storage and data
transfer are not in it. Source: https://aws.amazon.com/fargate/pricing/ ; us-east-1 was checked
against several published summaries of that page dated 2024-2026; the other regions are from the same
page as last read and were not re-checked offline. Update PRICES_AS_OF when you touch the table.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2025-06"
FALLBACK_REGION = "us-east-1"

# region -> (USD per vCPU-hour, USD per GB-hour), Linux/x86, on demand
FARGATE_PRICES: dict[str, tuple[float, float]] = {
    "us-east-1": (0.04048, 0.004445),
    "us-east-2": (0.04048, 0.004445),
    "us-west-2": (0.04048, 0.004445),
    "eu-west-1": (0.04048, 0.004445),
    "us-west-1": (0.04656, 0.00511),
    "eu-west-2": (0.04656, 0.00511),
    "eu-central-1": (0.04656, 0.00511),
    "ap-southeast-2": (0.04856, 0.00532),
    "ap-southeast-1": (0.05056, 0.00553),
    "ap-northeast-1": (0.05056, 0.00553),
}

# Task-level cpu units -> allowed memory MiB (Fargate's valid combinations).
FARGATE_SIZES: dict[int, range] = {
    256: range(512, 2048 + 1, 512),
    512: range(1024, 4096 + 1, 1024),
    1024: range(2048, 8192 + 1, 1024),
    2048: range(4096, 16384 + 1, 1024),
    4096: range(8192, 30720 + 1, 1024),
    8192: range(16384, 61440 + 1, 4096),
    16384: range(32768, 122880 + 1, 8192),
}


@dataclass(frozen=True)
class Estimate:
    usd_per_hour: float
    region: str
    priced_region: str
    prices_as_of: str = PRICES_AS_OF
    estimate: bool = True

    def as_dict(self) -> dict:
        return {
            "usdPerHour": self.usd_per_hour,
            "region": self.region,
            "pricedRegion": self.priced_region,
            "pricesAsOf": self.prices_as_of,
            "estimate": self.estimate,
        }

    def text(self) -> str:
        where = self.region if self.priced_region == self.region else f"{self.region}, priced as {self.priced_region}"
        return f"~${self.usd_per_hour:.4f}/h (estimate, Fargate on-demand Linux/x86, {where}, prices as of {self.prices_as_of})"


def fargate_hourly(cpu_units: int, memory_mib: int, region: str, count: int = 1) -> Estimate:
    """Estimated USD per hour for `count` tasks of `cpu_units` (1024 = 1 vCPU) and `memory_mib`."""
    priced = region if region in FARGATE_PRICES else FALLBACK_REGION
    per_vcpu, per_gb = FARGATE_PRICES[priced]
    hourly = (cpu_units / 1024 * per_vcpu + memory_mib / 1024 * per_gb) * count
    return Estimate(round(hourly, 6), region, priced)


def invalid_size(cpu_units: int, memory_mib: int) -> str | None:
    """Why Fargate would reject this cpu/memory pair; None when it is valid."""
    if cpu_units not in FARGATE_SIZES:
        return f"cpu {cpu_units} is not a Fargate size (one of {', '.join(map(str, FARGATE_SIZES))})"
    allowed = FARGATE_SIZES[cpu_units]
    if memory_mib not in allowed:
        return (
            f"memory {memory_mib} MiB is not valid with cpu {cpu_units} "
            f"(from {allowed.start} to {allowed.stop - 1} MiB in steps of {allowed.step})"
        )
    return None
