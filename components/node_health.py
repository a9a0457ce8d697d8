"""GPU node health: the EKS node monitoring agent, and alerts on GPU faults and GPU nodes that
are not Ready. Repair (replacing a node whose condition stays bad) is the node's engine's: the
managed node groups' `nodeRepairConfig` (components/node_group.py) or Karpenter's NodeRepair
feature gate (components/karpenter.py), both switched by gpuCapacity.nodeHealth.autoRepair.

- The agent (aws/eks-node-monitoring-agent v1.7.0) sets node conditions from what it reads on the
  node: GPU faults (NVIDIA Xid errors, reasons `NvidiaXID<n>Error`: pkg/reasons/reasons.go:83)
  turn `AcceleratedHardwareReady` False (pkg/conditions/conditions.go:15). Its DCGM DaemonSet
  tolerates nothing by default (charts/eks-node-monitoring-agent/values.yaml,
  `dcgmAgent.tolerations: []`), so it would never run on our tainted GPU nodes: the add-on's
  configuration gives it the GPU toleration.
- Karpenter replaces a node whose AcceleratedHardwareReady stays False for 10 minutes, or Ready
  False/Unknown for 30 (karpenter-provider-aws v1.14.1 pkg/cloudprovider/cloudprovider.go:305-345).
- The alerts read DCGM's `DCGM_FI_DEV_XID_ERRORS` (the value of the last Xid, a default counter
  of dcgm-exporter 4.8.2, etc/default-counters.csv:29, labelled `gpu`, `UUID`, `modelName`,
  `Hostname`: internal/pkg/rendermetrics/render_metrics.go:47) and kube-state-metrics' node
  conditions and capacities, so a page goes out before (and whether or not) a repair happens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.config.cluster import ClusterConfig
from components.k8s import GPU_TOLERATION
from components.karpenter import NAMESPACE as KARPENTER_NAMESPACE
from components.versions import EKS_ADDON_VERSIONS

ADDON = "eks-node-monitoring-agent"
# NVIDIA's Xid catalogue (docs.nvidia.com/deploy/xid-errors) marks these as needing the node
# drained and the GPU reset or replaced: double-bit ECC (48), row-remapping failure (63, 64),
# NVLink (74), GPU fallen off the bus (79), contained/uncontained ECC (94, 95), GSP (119, 120).
FATAL_XIDS = (48, 63, 64, 74, 79, 94, 95, 119, 120)
# kube-state-metrics names extended resources with '/' and '.' replaced by '_'.
GPU_CAPACITY = 'kube_node_status_capacity{resource="nvidia_com_gpu"} > 0'


def addon_version(cluster: ClusterConfig) -> str:
    """The pinned agent for the cluster's Kubernetes version, or the stack's own pin."""
    return (cluster.addon_versions.get(ADDON)
            or EKS_ADDON_VERSIONS[cluster.version][ADDON])


def addon_configuration() -> str:
    """The add-on's configuration values: the DCGM agent runs on tainted GPU nodes too."""
    return json.dumps({"dcgmAgent": {"tolerations": [GPU_TOLERATION]}}, sort_keys=True)


def alert_rules() -> dict[str, dict[str, Any]]:
    """alert name -> rule. Every one names the node it is about."""
    return {
        "GpuXidErrorFatal": {
            "expr": "max by (Hostname, gpu, UUID, modelName) ("
                    + " or ".join(f"DCGM_FI_DEV_XID_ERRORS == {x}" for x in FATAL_XIDS) + ")",
            "for": "0m", "severity": "critical",
            "summary": "GPU {{ $labels.gpu }} ({{ $labels.modelName }}) on "
                       "{{ $labels.Hostname }} reported a fatal Xid error: the node needs "
                       "draining and the GPU a reset or replacement.",
        },
        "GpuXidError": {
            "expr": "max by (Hostname, gpu, UUID, modelName) (DCGM_FI_DEV_XID_ERRORS) > 0",
            "for": "0m", "severity": "warning",
            "summary": "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} reported Xid "
                       "{{ $value }} (NVIDIA's Xid catalogue says what it means).",
        },
        "GpuNodeHardwareNotReady": {
            "expr": 'max by (node) (kube_node_status_condition{condition='
                    '"AcceleratedHardwareReady",status="false"} == 1)',
            "for": "5m", "severity": "critical",
            "summary": "GPU node {{ $labels.node }}: the node monitoring agent reports its "
                       "accelerated hardware unhealthy (auto-repair replaces it after 10 minutes "
                       "when enabled).",
        },
        "GpuNodeNotReady": {
            "expr": 'max by (node) (kube_node_status_condition{condition="Ready",'
                    f'status="true"}} == 0) and on (node) ({GPU_CAPACITY})',
            "for": "5m", "severity": "critical",
            "summary": "GPU node {{ $labels.node }} has not been Ready for 5 minutes: its "
                       "models' replicas there are gone.",
        },
    }


def karpenter_service_monitor(namespace: str) -> dict[str, Any]:
    """Scrapes the Karpenter controller's metrics Service (chart 1.14.1 templates/service.yaml:
    port `http-metrics`, selector labels `app.kubernetes.io/name`/`instance`, _helpers.tpl)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "karpenter", "namespace": namespace},
        "spec": {"namespaceSelector": {"matchNames": [KARPENTER_NAMESPACE]},
                 "selector": {"matchLabels": {"app.kubernetes.io/name": "karpenter",
                                              "app.kubernetes.io/instance": "karpenter"}},
                 "endpoints": [{"port": "http-metrics", "path": "/metrics"}]},
    }


def prometheus_rule(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": "gpu-node-health", "namespace": namespace},
        "spec": {"groups": [{"name": "gpu-node-health", "rules": [
            {"alert": name, "expr": rule["expr"], "for": rule["for"],
             "labels": {"severity": rule["severity"], "component": "gpu-node"},
             "annotations": {"summary": rule["summary"]}}
            for name, rule in alert_rules().items()]}]},
    }


@dataclass
class NodeHealthArgs:
    cluster: aws.eks.Cluster
    addon_version: str
    monitoring_agent: bool
    monitoring_namespace: str | None = None
    """Where the alert rules go (None: no monitoring, no rules)."""
    monitoring: pulumi.Resource | None = None
    """The release that installs the PrometheusRule CRD."""
    karpenter: pulumi.Resource | None = None
    """Karpenter's release, whose metrics (node launches, pod start-up) are scraped."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)
    """What the agent's pods need (the system nodes)."""


class NodeHealth(pulumi.ComponentResource):
    def __init__(self, name: str, args: NodeHealthArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:node_health:NodeHealth", name, None, opts)
        outputs: dict[str, Any] = {}
        if args.monitoring_agent:
            addon = aws.eks.Addon(
                f"{name}-{ADDON}", cluster_name=args.cluster.name, addon_name=ADDON,
                addon_version=args.addon_version, configuration_values=addon_configuration(),
                resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)))
            outputs["addonVersion"] = addon.addon_version
        if args.monitoring_namespace is not None:
            body = prometheus_rule(args.monitoring_namespace)
            k8s.apiextensions.CustomResource(
                f"{name}-alerts", api_version=body["apiVersion"], kind=body["kind"],
                metadata=body["metadata"], spec=body["spec"],
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[args.monitoring] if args.monitoring else []))
            outputs["alerts"] = body["metadata"]["name"]
            if args.karpenter is not None:
                body = karpenter_service_monitor(args.monitoring_namespace)
                k8s.apiextensions.CustomResource(
                    f"{name}-karpenter-metrics", api_version=body["apiVersion"],
                    kind=body["kind"], metadata=body["metadata"], spec=body["spec"],
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[
                        *([args.monitoring] if args.monitoring else []), args.karpenter]))
        self.register_outputs(outputs)
