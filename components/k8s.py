"""Kubernetes building blocks shared by the platform parts: namespaces, pinned Helm releases,
and where controllers and GPU workloads may run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.versions import CHARTS

POOL_LABEL = "mlserve.io/pool"
SYSTEM_POOL = "system"
# Controllers run on the system node group only, never on (expensive, tainted) GPU nodes.
SYSTEM_NODE_SELECTOR: dict[str, str] = {POOL_LABEL: SYSTEM_POOL}
GPU_TOLERATION: dict[str, str] = {"key": "nvidia.com/gpu", "operator": "Exists",
                                  "effect": "NoSchedule"}

# Pod Security admission levels per namespace: enforce what the workload needs, and warn/audit
# against `restricted` so anything weaker shows up.
BASELINE = "baseline"
PRIVILEGED = "privileged"
RESTRICTED = "restricted"


def resources(cpu: str, memory: str, *, cpu_limit: str = "1",
              memory_limit: str | None = None) -> dict[str, dict[str, str]]:
    """Requests and limits, both always set. Helm deep-merges values into the chart's defaults,
    so a limit left out keeps the chart's own (e.g. KServe's 100m CPU, which throttles the
    controller); and Pulumi doesn't carry a null that would delete it. So the CPU limit is a
    generous ceiling (a core by default) that lets controllers burst, and memory is limited at
    the request unless raised."""
    return {"requests": {"cpu": cpu, "memory": memory},
            "limits": {"cpu": cpu_limit, "memory": memory_limit or memory}}


def namespace(scope: pulumi.Resource, prefix: str, name: str, *, pod_security: str,
              labels: Mapping[str, str] | None = None,
              depends_on: Sequence[pulumi.Resource] = ()) -> k8s.core.v1.Namespace:
    return k8s.core.v1.Namespace(
        f"{prefix}-ns-{name}",
        metadata={
            "name": name,
            "labels": {
                "pod-security.kubernetes.io/enforce": pod_security,
                "pod-security.kubernetes.io/warn": RESTRICTED,
                "pod-security.kubernetes.io/audit": RESTRICTED,
                **(labels or {}),
            },
        },
        opts=pulumi.ResourceOptions(parent=scope, depends_on=list(depends_on)),
    )


def helm_release(scope: pulumi.Resource, prefix: str, chart_key: str, *, name: str,
                 namespace: pulumi.Input[str], values: pulumi.Input[Mapping[str, Any]],
                 depends_on: Sequence[pulumi.Resource] = (),
                 timeout_seconds: int = 600,
                 version: str | None = None) -> k8s.helm.v3.Release:
    """A Helm release of a chart pinned in versions.CHARTS, with an explicit name (no suffix).

    `version` overrides the pin only where config allows a choice (Seldon's licence switch).
    """
    chart = CHARTS[chart_key]
    return k8s.helm.v3.Release(
        f"{prefix}-{name}",
        name=name,
        chart=chart.chart,
        version=version or chart.version,
        repository_opts={"repo": chart.repository} if chart.repository else None,
        namespace=namespace,
        create_namespace=False,
        values=values,
        # A failed install or upgrade rolls back instead of leaving a half-applied release.
        atomic=True,
        cleanup_on_fail=True,
        wait_for_jobs=True,
        timeout=timeout_seconds,
        max_history=5,
        opts=pulumi.ResourceOptions(parent=scope, depends_on=list(depends_on)),
    )


def custom_resource(scope: pulumi.Resource, name: str, manifest: Mapping[str, Any],
                    depends_on: Sequence[pulumi.Resource],
                    spec: pulumi.Input[dict[str, Any]] | None = None,
                    metadata: pulumi.Input[dict[str, Any]] | None = None,
                    ) -> k8s.apiextensions.CustomResource:
    """A custom resource from its manifest, under `scope`; `spec` and `metadata` replace the
    manifest's where they are only known at deploy time."""
    return k8s.apiextensions.CustomResource(
        name, api_version=manifest["apiVersion"], kind=manifest["kind"],
        metadata=manifest["metadata"] if metadata is None else metadata,
        spec=manifest["spec"] if spec is None else spec,
        opts=pulumi.ResourceOptions(parent=scope, depends_on=list(depends_on)))
