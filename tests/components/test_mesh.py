"""components/mesh.py: Istio charts, the NLB gateway, the IngressClass, and their ordering."""

from __future__ import annotations

from tests.components.test_k8s import releases


def test_istio_charts_in_order(graph):
    rel = releases(graph)
    assert graph.waits_for(rel["istiod"], rel["istio-base"])
    assert graph.waits_for(rel["istio-ingressgateway"], rel["istiod"])


def test_destroy_removes_the_nlb_before_its_controller_and_network(graph):
    """Destroy reverses these edges: gateway (and its NLB) first, then the controller, then the
    subnets, gateways and VPC the NLB used."""
    rel = releases(graph)
    assert graph.waits_for(rel["istio-ingressgateway"], rel["aws-load-balancer-controller"])
    network = graph.one("mlserve:network:Network")
    network_resources = [r for r in graph.children(network) if r.type.startswith("aws:ec2/")]
    assert network_resources
    for resource in network_resources:
        assert graph.waits_for(rel["aws-load-balancer-controller"], resource)


def test_gateway_is_an_nlb_from_the_lb_controller(graph):
    service = releases(graph)["istio-ingressgateway"].inputs["values"]["service"]
    annotations = service["annotations"]
    assert service["type"] == "LoadBalancer"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-type"] == "external"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] == "ip"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internet-facing"
    assert isinstance(service["loadBalancerSourceRanges"], list)


def test_gateway_names_match_istios_ingress_defaults(graph):
    istiod = releases(graph)["istiod"].inputs["values"]
    gateway = releases(graph)["istio-ingressgateway"]
    mesh = istiod["meshConfig"]
    assert mesh["ingressService"] == gateway.inputs["name"] == "istio-ingressgateway"
    assert mesh["ingressSelector"] == "ingressgateway"
    assert mesh["ingressClass"] == "istio"
    assert gateway.inputs["namespace"] == releases(graph)["istiod"].inputs["namespace"]


def test_native_sidecars_so_storage_initializer_reaches_s3(graph):
    assert releases(graph)["istiod"].inputs["values"]["env"] == {"ENABLE_NATIVE_SIDECARS": "true"}


def test_ingress_class_istio(graph):
    ingress_class = graph.one("kubernetes:networking.k8s.io/v1:IngressClass")
    assert ingress_class.inputs["metadata"]["name"] == "istio"
    assert ingress_class.inputs["spec"] == {"controller": "istio.io/ingress-controller"}
    assert graph.waits_for(ingress_class, releases(graph)["istiod"])
