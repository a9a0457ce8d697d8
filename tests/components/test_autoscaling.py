"""components/autoscaling.py, components/gpu_stack.py and components/cert_manager.py."""

from __future__ import annotations

from tests.components.test_k8s import releases
from tests.harness import evaluate, set_path, stack_config


def test_keda_and_metrics_server_installed(graph):
    rel = releases(graph)
    assert rel["keda"].inputs["namespace"] == "keda"
    assert rel["metrics-server"].inputs["namespace"] == "kube-system"


def test_cert_manager_installs_its_crds(graph):
    values = releases(graph)["cert-manager"].inputs["values"]
    assert values["crds"] == {"enabled": True, "keep": True}


def test_device_plugin_only_on_al2023_gpu_nodes(graph):
    affinity = releases(graph)["nvidia-device-plugin"].inputs["values"]["affinity"]
    (term,) = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    assert {"key": "mlserve.io/ami-family", "operator": "In", "values": ["al2023"]} in \
        term["matchExpressions"]
    assert {"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]} in \
        term["matchExpressions"]


def test_no_device_plugin_when_every_gpu_pool_is_bottlerocket():
    config = set_path(stack_config("dev"), "gpuNodeGroups[0].amiType",
                      "BOTTLEROCKET_x86_64_NVIDIA")
    graph = evaluate("dev", config=config)
    assert "nvidia-device-plugin" not in releases(graph)
    assert "dcgm-exporter" in releases(graph)


def test_dcgm_exporter_scraped_by_prometheus(graph):
    rel = releases(graph)
    values = rel["dcgm-exporter"].inputs["values"]
    assert values["serviceMonitor"]["enabled"] is True
    assert values["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert graph.waits_for(rel["dcgm-exporter"], rel["kps"])


def test_gpu_daemons_go_before_gpu_nodes_on_destroy(graph):
    (gpu_groups,) = [*graph.of_type("mlserve:gpu_node_groups:GpuNodeGroups"),
                     *graph.of_type("mlserve:gpu_capacity:KarpenterGpuPools")]
    for name in ("nvidia-device-plugin", "dcgm-exporter"):
        assert graph.waits_for(releases(graph)[name], gpu_groups)
