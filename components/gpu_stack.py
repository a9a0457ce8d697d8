"""What GPU nodes need from the cluster: the NVIDIA device plugin (AL2023 nodes; Bottlerocket
ships its own) and DCGM exporter, so GPU utilisation and memory reach Prometheus."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.config.nodes import GpuNodeGroupConfig
from components.config.platform import PlatformConfig
from components.gpu_node_groups import AMI_FAMILY_LABEL, GPU_PRESENT_LABEL
from components.k8s import GPU_TOLERATION, PRIVILEGED, helm_release, namespace, resources

NAMESPACE = "nvidia"


def device_plugin_values() -> dict[str, Any]:
    return {
        # Replaces the chart's default affinity (NFD labels or nvidia.com/gpu.present): only
        # GPU nodes whose AMI lacks a built-in plugin.
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": GPU_PRESENT_LABEL, "operator": "In", "values": ["true"]},
                {"key": AMI_FAMILY_LABEL, "operator": "In", "values": ["al2023"]},
            ]}]}}},
        "tolerations": [GPU_TOLERATION],
        "resources": resources("10m", "32Mi", memory_limit="128Mi"),
        "gfd": {"enabled": False},
    }


def dcgm_exporter_values() -> dict[str, Any]:
    return {
        "nodeSelector": {GPU_PRESENT_LABEL: "true"},
        "tolerations": [GPU_TOLERATION],
        "serviceMonitor": {"enabled": True, "interval": "15s"},
        "resources": resources("50m", "128Mi", memory_limit="512Mi"),
    }


@dataclass
class GpuStackArgs:
    device_plugin: bool
    dcgm_exporter: bool
    monitoring: pulumi.Resource | None = None
    """The release that installs the ServiceMonitor CRD."""
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)
    """What provides the GPU nodes: they outlive the daemons that run on them."""

    @property
    def wanted(self) -> bool:
        """Whether there is any daemon to run."""
        return self.device_plugin or self.dcgm_exporter


def needs_device_plugin(platform: PlatformConfig, pools: Sequence[GpuNodeGroupConfig]) -> bool:
    """The device plugin runs where a GPU pool's AMI lacks one (AL2023; Bottlerocket's NVIDIA AMI
    ships its own), unless turned off."""
    return platform.nvidia_device_plugin.enabled and any(
        pool.ami_type.startswith("AL2023") for pool in pools)


class GpuStack(pulumi.ComponentResource):
    def __init__(self, name: str, args: GpuStackArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:gpu_stack:GpuStack", name, None, opts)
        # Both need host access to the driver and the kubelet's device-plugin socket.
        ns = namespace(self, name, NAMESPACE, pod_security=PRIVILEGED)
        outputs: dict[str, Any] = {"namespace": ns.metadata.name}
        if args.device_plugin:
            plugin = helm_release(self, name, "nvidia-device-plugin", name="nvidia-device-plugin",
                                  namespace=ns.metadata.name, values=device_plugin_values(),
                                  depends_on=args.depends_on)
            outputs["devicePlugin"] = plugin.status
        if args.dcgm_exporter:
            monitors = [args.monitoring] if args.monitoring is not None else []
            dcgm = helm_release(self, name, "dcgm-exporter", name="dcgm-exporter",
                                namespace=ns.metadata.name, values=dcgm_exporter_values(),
                                depends_on=[*args.depends_on, *monitors])
            outputs["dcgmExporter"] = dcgm.status
        self.register_outputs(outputs)
