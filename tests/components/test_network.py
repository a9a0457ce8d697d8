"""components/network.py: subnets, routing, NAT, tags, existing VPCs."""

from __future__ import annotations

import ipaddress

import pytest

from tests.harness import evaluate, set_path, stack_config

VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
NAT = "aws:ec2/natGateway:NatGateway"
ROUTE = "aws:ec2/route:Route"
RTA = "aws:ec2/routeTableAssociation:RouteTableAssociation"


def subnets(graph, kind):
    return sorted((s for s in graph.of_type(SUBNET) if f"-{kind}-" in s.name),
                  key=lambda s: s.name)


def test_subnets_span_the_configured_zones_inside_the_vpc(graph):
    vpc = graph.one(VPC)
    assert vpc.inputs["enableDnsSupport"] and vpc.inputs["enableDnsHostnames"]
    zones = len(subnets(graph, "private"))
    assert zones == len(subnets(graph, "public")) >= 2
    for kind in ("private", "public"):
        assert len({s.inputs["availabilityZone"] for s in subnets(graph, kind)}) == zones
    nets = [ipaddress.IPv4Network(s.inputs["cidrBlock"]) for s in graph.of_type(SUBNET)]
    assert all(n.subnet_of(ipaddress.IPv4Network(vpc.inputs["cidrBlock"])) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])


def test_zone_counts_per_stack(dev, prod):
    assert len(subnets(dev, "private")) == 2
    assert len(subnets(prod, "private")) == 3


def test_no_subnet_hands_out_public_ips(graph):
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in graph.of_type(SUBNET))


def test_subnet_tags_for_load_balancers_and_the_cluster(graph):
    cluster = graph.one("aws:eks/cluster:Cluster").inputs["name"]
    for subnet in subnets(graph, "public"):
        assert subnet.inputs["tags"]["kubernetes.io/role/elb"] == "1"
        assert "kubernetes.io/role/internal-elb" not in subnet.inputs["tags"]
        assert subnet.inputs["tags"][f"kubernetes.io/cluster/{cluster}"] == "shared"
    for subnet in subnets(graph, "private"):
        assert subnet.inputs["tags"]["kubernetes.io/role/internal-elb"] == "1"
        assert "kubernetes.io/role/elb" not in subnet.inputs["tags"]
        assert subnet.inputs["tags"][f"kubernetes.io/cluster/{cluster}"] == "shared"


def test_single_nat_in_dev_and_one_per_zone_in_prod(dev, prod):
    assert len(dev.of_type(NAT)) == 1
    assert len(prod.of_type(NAT)) == 3
    assert len(prod.of_type("aws:ec2/eip:Eip")) == 3
    public_ids = {s.urn for s in subnets(prod, "public")}
    for nat in prod.of_type(NAT):
        assert set(nat.property_dependencies["subnetId"]) <= public_ids


def test_private_subnets_route_through_their_own_zones_nat(prod):
    for index in range(3):
        route = prod.one(ROUTE, f"network-private-default-{index}")
        assert route.inputs["destinationCidrBlock"] == "0.0.0.0/0"
        assert route.property_dependencies["natGatewayId"] == [
            prod.one(NAT, f"network-nat-{index}").urn]


def test_public_subnets_route_to_the_internet_gateway(graph):
    route = graph.one(ROUTE, "network-public-default")
    assert route.inputs["destinationCidrBlock"] == "0.0.0.0/0"
    assert route.property_dependencies["gatewayId"] == [
        graph.one("aws:ec2/internetGateway:InternetGateway").urn]
    associated = {u for a in graph.of_type(RTA) for u in a.property_dependencies["subnetId"]}
    assert associated == {s.urn for s in graph.of_type(SUBNET)}


def test_default_security_group_allows_nothing(graph):
    sg = graph.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert not sg.inputs.get("ingress") and not sg.inputs.get("egress")


def test_flow_log_records_rejected_traffic(graph):
    flow = graph.one("aws:ec2/flowLog:FlowLog")
    assert flow.inputs["trafficType"] == "REJECT"
    assert flow.inputs["logDestinationType"] == "cloud-watch-logs"
    group = graph.one("aws:cloudwatch/logGroup:LogGroup", "network-flow-log")
    assert group.inputs["retentionInDays"] > 0


def test_flow_log_can_be_switched_off():
    graph = evaluate("dev", config=set_path(stack_config("dev"), "network.flowLogRetentionDays", 0))
    assert graph.error is None
    assert graph.of_type("aws:ec2/flowLog:FlowLog") == []


def test_explicit_zones_are_used_without_a_lookup():
    config = set_path(stack_config("dev"), "network.availabilityZones", ["us-west-2b", "us-west-2c"])
    graph = evaluate("dev", config=config)
    assert graph.error is None
    assert {s.inputs["availabilityZone"] for s in graph.of_type(SUBNET)} == {"us-west-2b",
                                                                           "us-west-2c"}
    assert not [i for i in graph.invokes if i.token.endswith("getAvailabilityZones")]


def test_zone_lookup_excludes_opt_in_zones(dev):
    lookup = next(i for i in dev.invokes if i.token.endswith("getAvailabilityZones"))
    assert lookup.args["state"] == "available"
    assert {"name": "opt-in-status", "values": ["opt-in-not-required"]} in lookup.args["filters"]


EXISTING = {
    "vpcId": "vpc-0123456789abcdef0",
    "privateSubnetIds": ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"],
    "publicSubnetIds": ["subnet-0a1b2c3d4e5f60003", "subnet-0a1b2c3d4e5f60004"],
}


@pytest.fixture(scope="module")
def existing():
    graph = evaluate("dev", config=set_path(stack_config("dev"), "network", {"existingVpc": EXISTING}))
    assert graph.error is None, graph.error
    return graph


def test_existing_vpc_creates_no_network(existing):
    for kind in (VPC, SUBNET, NAT, "aws:ec2/internetGateway:InternetGateway"):
        assert existing.of_type(kind) == []
    assert existing.exports["vpcId"] == EXISTING["vpcId"]
    eks = existing.one("aws:eks/cluster:Cluster")
    assert eks.inputs["vpcConfig"]["subnetIds"] == EXISTING["privateSubnetIds"]


def test_existing_subnets_get_the_discovery_tags(existing):
    tags = {(t.inputs["resourceId"], t.inputs["key"]): t.inputs["value"]
            for t in existing.of_type("aws:ec2/tag:Tag")}
    for subnet in EXISTING["privateSubnetIds"]:
        assert tags[(subnet, "kubernetes.io/role/internal-elb")] == "1"
        assert tags[(subnet, "kubernetes.io/cluster/mlserve-dev")] == "shared"
    for subnet in EXISTING["publicSubnetIds"]:
        assert tags[(subnet, "kubernetes.io/role/elb")] == "1"
        assert tags[(subnet, "kubernetes.io/cluster/mlserve-dev")] == "shared"
