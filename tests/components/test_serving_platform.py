"""components/serving_platform.py: KServe Standard mode, the Triton runtime, the model namespace."""

from __future__ import annotations

from components.versions import TRITON_IMAGE, TRITON_IMAGE_TAG
from tests.components.test_k8s import releases
from tests.harness import evaluate, set_path, stack_config


def test_kserve_standard_mode_with_istio_ingress(graph):
    controller = releases(graph)["kserve"].inputs["values"]["kserve"]["controller"]
    assert controller["deploymentMode"] == "Standard"
    assert controller["gateway"]["ingressGateway"]["className"] == "istio"
    assert controller["gateway"]["domain"] == "example.com"


def test_ingress_domain_from_config():
    graph = evaluate("dev", config=set_path(stack_config("dev"), "platform.kserve.ingressDomain",
                                            "models.acme.io"))
    controller = releases(graph)["kserve"].inputs["values"]["kserve"]["controller"]
    assert controller["gateway"]["domain"] == "models.acme.io"


def test_triton_runtime_enabled_and_pinned(graph):
    runtime = releases(graph)["kserve-runtime-configs"].inputs["values"]["kserve"]["servingruntime"]
    assert runtime["enabled"] is True
    assert runtime["tritonserver"] == {"image": TRITON_IMAGE, "tag": TRITON_IMAGE_TAG}
    assert TRITON_IMAGE_TAG != "23.05-py3"


def test_kserve_install_order(graph):
    rel = releases(graph)
    for before in ("kserve-crd", "cert-manager", "istiod"):
        assert graph.waits_for(rel["kserve"], rel[before]), before
    assert graph.waits_for(rel["kserve-runtime-configs"], rel["kserve"])


def test_model_namespace_is_meshed_with_strict_mtls(graph):
    namespaces = {n.inputs["metadata"]["name"]: n
                  for n in graph.of_type("kubernetes:core/v1:Namespace")}
    models = namespaces["models"]
    assert models.inputs["metadata"]["labels"]["istio-injection"] == "enabled"
    peer = graph.one("kubernetes:security.istio.io/v1:PeerAuthentication", "serving-models-mtls")
    assert peer.inputs["metadata"] == {"name": "default", "namespace": "models"}
    assert peer.inputs["spec"] == {"mtls": {"mode": "STRICT"}}
    assert graph.waits_for(peer, releases(graph)["istio-base"])
    assert graph.waits_for(peer, models)
