"""Before `pulumi up`: does the account's EC2 quota hold what the stack's node pools may launch?

    .venv/bin/python -m tools.preflight --stack dev        # or: make preflight STACK=dev

EC2 limits running instances per instance family and purchase option, in vCPUs (Service Quotas,
service code `ec2`): GPU pools need "Running On-Demand G and VT instances" or "All G and VT Spot
Instance Requests" (g4dn, g5, g6, g6e), their P twins (p4d, p5...), and the system nodes the
Standard on-demand quota. New accounts start the GPU ones at 0, and a pool that can't launch
leaves its models Pending with nothing in the Pulumi output to say why.

What a stack may need is, per quota, the sum over its pools of maxSize nodes of the pool's
largest instance type; a Karpenter pool counts once per capacity type it may use, since each
capacity type has a NodePool of its own with that limit (components/gpu_capacity.py). The quota
applied is the account's (GetServiceQuota), or AWS's default where the account has never had it
changed (GetAWSDefaultServiceQuota). Exit code 0 when every quota holds the need, 1 otherwise,
2 when the stack file or AWS can't be read; one line per quota.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from components.config.gpu_capacity import GpuCapacityConfig, karpenter_capacity_types
from components.config.nodes import GpuNodeGroupConfig, SystemNodeGroupConfig
from components.versions import INSTANCE_FACTS

ROOT = Path(__file__).resolve().parent.parent
SERVICE = "ec2"
# (family, capacity type) -> (quota code, quota name). Codes as Service Quotas lists them for
# service `ec2` (`aws service-quotas list-service-quotas --service-code ec2`).
QUOTAS: dict[tuple[str, str], tuple[str, str]] = {
    ("G", "on-demand"): ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    ("G", "spot"): ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    ("P", "on-demand"): ("L-417A185B", "Running On-Demand P instances"),
    ("P", "spot"): ("L-7212CCBC", "All P Spot Instance Requests"),
    ("Standard", "on-demand"): ("L-1216C47A",
                                "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
    ("Standard", "spot"): ("L-34B43A08",
                           "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"),
}


class PreflightError(Exception):
    """The stack file or the account could not be read."""


def family(instance_type: str) -> str:
    """The quota family: G and VT (g4dn, g5, g6, g6e), P (p4d, p5...), else Standard (the
    system nodes' m, c, r...; GPU pools take only g and p types, components/config.py)."""
    return {"g": "G", "p": "P"}.get(instance_type[0], "Standard")


def vcpus(instance_type: str) -> int:
    facts = INSTANCE_FACTS.get(instance_type)
    if facts is None:
        raise PreflightError(f"{instance_type}: vCPUs unknown (not in components/versions.py "
                             "INSTANCE_FACTS)")
    return facts.vcpus


@dataclass
class Need:
    family: str
    capacity: str
    vcpus: int = 0
    pools: list[str] = field(default_factory=list)

    @property
    def quota(self) -> tuple[str, str]:
        return QUOTAS[(self.family, self.capacity)]


@dataclass(frozen=True)
class StackPools:
    region: str
    system: SystemNodeGroupConfig
    gpu: list[GpuNodeGroupConfig]
    capacity: GpuCapacityConfig


def read_stack(stack: str, project_dir: Path = ROOT) -> StackPools:
    """The sections preflight needs from `Pulumi.<stack>.yaml`, validated by the same models as
    `pulumi up` (components/config.py)."""
    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise PreflightError(f"{path.name}: no such stack file")
    values: Mapping[str, Any] = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    region = values.get("mlserve:region")
    if not isinstance(region, str):
        raise PreflightError(f"{path.name}: mlserve:region is not set")
    try:
        return StackPools(
            region=region,
            system=SystemNodeGroupConfig.model_validate(values.get("mlserve:systemNodeGroup")
                                                        or {}),
            gpu=TypeAdapter(list[GpuNodeGroupConfig]).validate_python(
                values.get("mlserve:gpuNodeGroups") or []),
            capacity=GpuCapacityConfig.model_validate(values.get("mlserve:gpuCapacity") or {}))
    except ValidationError as error:
        raise PreflightError(f"{path.name}: invalid node pools ({error.error_count()} "
                             f"problem(s)); `pulumi preview` lists them:\n{error}") from None


def needs(pools: StackPools) -> list[Need]:
    """vCPUs each quota must hold when every pool is at maxSize of its largest instance type."""
    found: dict[tuple[str, str], Need] = {}

    def add(name: str, types: Sequence[str], nodes: int, capacity: str) -> None:
        fam = family(types[0])
        need = found.setdefault((fam, capacity), Need(fam, capacity))
        need.vcpus += nodes * max(vcpus(t) for t in types)
        need.pools.append(name)

    add("system", pools.system.instance_types, pools.system.max_size, "on-demand")
    for pool in pools.gpu:
        if pools.capacity.engine == "karpenter":
            for capacity in karpenter_capacity_types(pools.capacity, pool.name,
                                                     pool.capacity_type):
                add(pool.name, pool.instance_types, pool.max_size, capacity)
        else:
            add(pool.name, pool.instance_types, pool.max_size,
                "spot" if pool.capacity_type == "SPOT" else "on-demand")
    return sorted(found.values(), key=lambda n: (n.family, n.capacity))


def quota_value(client: Any, code: str) -> float:
    """The account's applied quota, or AWS's default where none was ever applied."""
    try:
        return float(client.get_service_quota(ServiceCode=SERVICE, QuotaCode=code)
                     ["Quota"]["Value"])
    except client.exceptions.NoSuchResourceException:
        return float(client.get_aws_default_service_quota(ServiceCode=SERVICE, QuotaCode=code)
                     ["Quota"]["Value"])


@dataclass(frozen=True)
class Verdict:
    need: Need
    quota: float

    @property
    def ok(self) -> bool:
        return self.quota >= self.need.vcpus

    def line(self) -> str:
        code, name = self.need.quota
        mark = "ok  " if self.ok else "FAIL"
        text = (f"{mark} {name} ({code}): {self.need.vcpus} vCPUs needed by "
                f"{', '.join(self.need.pools)}; quota {self.quota:g}")
        if not self.ok:
            text += (f" -> request at least {self.need.vcpus} in Service Quotas "
                     f"(aws service-quotas request-service-quota-increase --service-code {SERVICE}"
                     f" --quota-code {code} --desired-value {self.need.vcpus})")
        return text


def check(pools: StackPools, client: Any) -> list[Verdict]:
    return [Verdict(need, quota_value(client, need.quota[0])) for need in needs(pools)]


def main(argv: Sequence[str] | None = None, client: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.preflight", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", required=True, help="the stack whose Pulumi.<stack>.yaml "
                        "to check")
    parser.add_argument("--endpoint-url", help="Service Quotas endpoint (tests)")
    args = parser.parse_args(argv)
    try:
        pools = read_stack(args.stack)
        if client is None:
            import boto3
            client = boto3.client("service-quotas", region_name=pools.region,
                                  endpoint_url=args.endpoint_url)
        verdicts = check(pools, client)
    except PreflightError as error:
        print(f"preflight: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # botocore's errors: no credentials, denied, throttled
        print(f"preflight: could not read the EC2 quotas of {args.stack}'s account: {error}",
              file=sys.stderr)
        return 2
    print(f"EC2 vCPU quotas in {pools.region} for stack {args.stack} "
          f"(gpuCapacity.engine {pools.capacity.engine}):")
    for verdict in verdicts:
        print(f"  {verdict.line()}")
    return 0 if all(v.ok for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
