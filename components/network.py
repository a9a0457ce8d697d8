"""The VPC the cluster lives in: created here, or an existing one brought by the stack."""

from __future__ import annotations

import operator
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config.network import NetworkConfig
from components.iam import policy_document, service_trust_policy

ELB_ROLE_TAG = "kubernetes.io/role/elb"
INTERNAL_ELB_ROLE_TAG = "kubernetes.io/role/internal-elb"


def cluster_tag(cluster_name: str) -> str:
    return f"kubernetes.io/cluster/{cluster_name}"


@dataclass
class NetworkArgs:
    config: NetworkConfig
    cluster_name: str
    """Subnets are tagged for this cluster so EKS and the load-balancer controller discover them."""


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:network:Network", name, None, opts)
        self._name = name
        self._args = args
        if args.config.existing_vpc is not None:
            self._adopt_existing()
        else:
            self._create()
        self.register_outputs({
            "vpcId": self.vpc_id,
            "privateSubnetIds": self.private_subnet_ids,
            "publicSubnetIds": self.public_subnet_ids,
        })

    def _subnet_tags(self, public: bool) -> dict[str, str]:
        role = ELB_ROLE_TAG if public else INTERNAL_ELB_ROLE_TAG
        return {role: "1", cluster_tag(self._args.cluster_name): "shared"}

    def _adopt_existing(self) -> None:
        existing = self._args.config.existing_vpc
        assert existing is not None
        # Tags on subnets we don't own, as separate resources, so destroy removes only the tags.
        for public, subnet_ids in ((False, existing.private_subnet_ids),
                                   (True, existing.public_subnet_ids)):
            for subnet_id in subnet_ids:
                for key, value in self._subnet_tags(public).items():
                    aws.ec2.Tag(
                        f"{self._name}-{subnet_id}-{key.rsplit('/', 1)[-1]}",
                        resource_id=subnet_id, key=key, value=value,
                        opts=pulumi.ResourceOptions(parent=self),
                    )
        self.vpc_id = pulumi.Output.from_input(existing.vpc_id)
        self.private_subnet_ids = pulumi.Output.from_input(list(existing.private_subnet_ids))
        self.public_subnet_ids = pulumi.Output.from_input(list(existing.public_subnet_ids))

    def _create(self) -> None:
        name, config = self._name, self._args.config
        child = pulumi.ResourceOptions(parent=self)
        prefix = self._args.cluster_name
        private_cidrs, public_cidrs = config.subnet_cidrs()

        if config.availability_zones is not None:
            zones = pulumi.Output.from_input(list(config.availability_zones))
        else:
            # Local and Wavelength zones need opting in and lack GPU capacity: standard AZs only.
            zones = aws.get_availability_zones_output(
                state="available",
                filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
                opts=pulumi.InvokeOutputOptions(parent=self),
            ).names.apply(lambda names: sorted(names)[: config.az_count])

        vpc = aws.ec2.Vpc(
            f"{name}-vpc", cidr_block=config.vpc_cidr, enable_dns_support=True,
            enable_dns_hostnames=True, tags={"Name": prefix}, opts=child,
        )
        # CIS AWS 5.4: the default security group allows nothing.
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id,
                                     tags={"Name": f"{prefix}-default-deny"}, opts=child)
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={"Name": prefix},
                                      opts=child)

        public_rt = aws.ec2.RouteTable(f"{name}-public-rt", vpc_id=vpc.id,
                                       tags={"Name": f"{prefix}-public"}, opts=child)
        aws.ec2.Route(f"{name}-public-default", route_table_id=public_rt.id,
                      destination_cidr_block="0.0.0.0/0", gateway_id=igw.id, opts=child)

        public_subnets: list[aws.ec2.Subnet] = []
        private_subnets: list[aws.ec2.Subnet] = []
        nat_gateways: list[aws.ec2.NatGateway] = []
        for index in range(config.az_count):
            zone = zones.apply(operator.itemgetter(index))
            public = aws.ec2.Subnet(
                f"{name}-public-{index}", vpc_id=vpc.id, cidr_block=public_cidrs[index],
                availability_zone=zone,
                # Load balancers and NAT gateways get their own addresses; instances never do.
                map_public_ip_on_launch=False,
                tags={"Name": f"{prefix}-public-{index}", **self._subnet_tags(public=True)},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(f"{name}-public-{index}", subnet_id=public.id,
                                          route_table_id=public_rt.id, opts=child)
            public_subnets.append(public)

            if config.nat_gateways == "perAz" or index == 0:
                eip = aws.ec2.Eip(f"{name}-nat-{index}", domain="vpc",
                                  tags={"Name": f"{prefix}-nat-{index}"}, opts=child)
                nat_gateways.append(aws.ec2.NatGateway(
                    f"{name}-nat-{index}", allocation_id=eip.id, subnet_id=public.id,
                    tags={"Name": f"{prefix}-nat-{index}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                ))

            private = aws.ec2.Subnet(
                f"{name}-private-{index}", vpc_id=vpc.id, cidr_block=private_cidrs[index],
                availability_zone=zone, map_public_ip_on_launch=False,
                tags={"Name": f"{prefix}-private-{index}", **self._subnet_tags(public=False)},
                opts=child,
            )
            private_rt = aws.ec2.RouteTable(f"{name}-private-rt-{index}", vpc_id=vpc.id,
                                            tags={"Name": f"{prefix}-private-{index}"}, opts=child)
            aws.ec2.Route(f"{name}-private-default-{index}", route_table_id=private_rt.id,
                          destination_cidr_block="0.0.0.0/0",
                          nat_gateway_id=nat_gateways[-1].id, opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-private-{index}", subnet_id=private.id,
                                          route_table_id=private_rt.id, opts=child)
            private_subnets.append(private)

        if config.flow_log_retention_days:
            self._flow_log(vpc)

        self.vpc_id = vpc.id
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private_subnets])
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public_subnets])

    def _flow_log(self, vpc: aws.ec2.Vpc) -> None:
        """Rejected traffic to CloudWatch (CIS AWS 3.9) at a fraction of the cost of ALL."""
        name, child = self._name, pulumi.ResourceOptions(parent=self)
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-log", name=f"/mlserve/{self._args.cluster_name}/vpc-flow-log",
            retention_in_days=self._args.config.flow_log_retention_days, opts=child,
        )
        role = aws.iam.Role(f"{name}-flow-log", opts=child,
                            assume_role_policy=service_trust_policy("vpc-flow-logs.amazonaws.com"))
        policy = aws.iam.RolePolicy(
            f"{name}-flow-log", role=role.name, opts=child,
            policy=log_group.arn.apply(lambda arn: policy_document({
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents",
                           "logs:DescribeLogGroups", "logs:DescribeLogStreams"],
                "Resource": [arn, f"{arn}:*"],
            })),
        )
        aws.ec2.FlowLog(
            f"{name}-flow-log", vpc_id=vpc.id, traffic_type="REJECT",
            log_destination_type="cloud-watch-logs", log_destination=log_group.arn,
            iam_role_arn=role.arn, max_aggregation_interval=600,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
