"""Karpenter, the engine behind GPU pools (gpuCapacity.engine karpenter): its controller on the
system nodes, and everything the controller and its nodes need, created here and least-privilege.

What is created follows Karpenter v1.14.1's own getting-started CloudFormation template
(aws/karpenter-provider-aws, website/content/en/docs/getting-started/getting-started-with-karpenter/
cloudformation.yaml), with these differences, each on purpose:

- The controller's identity is an EKS Pod Identity association (the template's companion eksctl
  config uses `podIdentityAssociations`, getting-started-with-karpenter/scripts/
  step02-create-cluster.sh:21); the cluster already runs the eks-pod-identity-agent
  add-on. Its permissions are the template's five policies, as inline policies of one role.
- The node role is Karpenter's own, not the managed node groups' (EKS creates an access entry for
  a managed node group's role itself; a second entry for the same role would conflict). It gets
  an EC2_LINUX access entry, which both AL2023 and Bottlerocket nodes join with. It carries no CNI
  permissions: the VPC CNI has its own IRSA role (components/cluster.py).
- Subnets and the cluster security group get the `karpenter.sh/discovery` tag, as separate tag
  resources, so destroy removes only the tags.

Destroy order (designed with dependencies, README "GPU capacity"): the NodePools go first (the
model pods before them, see __main__), then each EC2NodeClass, whose finalizer holds its deletion
until every NodeClaim launched from it has terminated and its instance profiles are deleted
(v1.14.1 pkg/controllers/nodeclass/controller.go `finalize`, lines 214-244); only then the
controller release, and after it the IAM, the queue, the tags
and the VPC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.iam import aws_managed_policy, partition_of, policy_document, service_trust_policy
from components.k8s import SYSTEM_NODE_SELECTOR, helm_release, resources

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "karpenter"
DISCOVERY_TAG = "karpenter.sh/discovery"
NODE_ROLE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly",
                      "AmazonSSMManagedInstanceCore")
# The events Karpenter acts on ahead of time (the template's five rules): spot interruption
# warnings, rebalance recommendations, scheduled maintenance (AWS Health), instance state
# changes, capacity-reservation interruptions.
INTERRUPTION_EVENTS: dict[str, dict[str, list[str]]] = {
    "scheduled-change": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
    "spot-interruption": {"source": ["aws.ec2"],
                          "detail-type": ["EC2 Spot Instance Interruption Warning"]},
    "rebalance": {"source": ["aws.ec2"],
                  "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    "instance-state-change": {"source": ["aws.ec2"],
                              "detail-type": ["EC2 Instance State-change Notification"]},
    "capacity-reservation-interruption": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Capacity Reservation Instance Interruption Warning"]},
}
# The aggregate size limit of a role's inline policies (IAM quotas: 10,240 characters).
INLINE_POLICY_LIMIT = 10240


def controller_policies(*, partition: str, region: str, account_id: str, cluster_name: str,
                        node_role_arn: str, queue_arn: str) -> dict[str, str]:
    """The controller's permissions: Karpenter v1.14.1's CloudFormation template, policy by
    policy, statement by statement. Writes are scoped to resources tagged as this cluster's and
    a NodePool's; reads to the region."""
    arn = f"arn:{partition}"
    ec2 = f"{arn}:ec2:{region}"
    owned = f"kubernetes.io/cluster/{cluster_name}"
    tagged_launch = ["fleet", "instance", "volume", "network-interface", "launch-template",
                     "spot-instances-request"]
    profiles = f"{arn}:iam::{account_id}:instance-profile/*"
    cluster_arn = f"{arn}:eks:{region}:{account_id}:cluster/{cluster_name}"
    return {
        "node-lifecycle": policy_document(
            {"Sid": "AllowScopedEC2InstanceAccessActions", "Effect": "Allow",
             "Resource": [f"{arn}:ec2:{region}::image/*", f"{arn}:ec2:{region}::snapshot/*",
                          *(f"{ec2}:*:{kind}/*" for kind in (
                              "security-group", "subnet", "capacity-reservation",
                              "placement-group"))],
             "Action": ["ec2:RunInstances", "ec2:CreateFleet"]},
            {"Sid": "AllowScopedEC2LaunchTemplateAccessActions", "Effect": "Allow",
             "Resource": f"{ec2}:*:launch-template/*",
             "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
             "Condition": {"StringEquals": {f"aws:ResourceTag/{owned}": "owned"},
                           "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}}},
            {"Sid": "AllowScopedEC2InstanceActionsWithTags", "Effect": "Allow",
             "Resource": [f"{ec2}:*:{kind}/*" for kind in tagged_launch],
             "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
             "Condition": {"StringEquals": {f"aws:RequestTag/{owned}": "owned",
                                            "aws:RequestTag/eks:eks-cluster-name": cluster_name},
                           "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}},
            {"Sid": "AllowScopedResourceCreationTagging", "Effect": "Allow",
             "Resource": [f"{ec2}:*:{kind}/*" for kind in tagged_launch],
             "Action": "ec2:CreateTags",
             "Condition": {"StringEquals": {
                 f"aws:RequestTag/{owned}": "owned",
                 "aws:RequestTag/eks:eks-cluster-name": cluster_name,
                 "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"]},
                 "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}},
            {"Sid": "AllowScopedResourceTagging", "Effect": "Allow",
             "Resource": f"{ec2}:*:instance/*", "Action": "ec2:CreateTags",
             "Condition": {
                 "StringEquals": {f"aws:ResourceTag/{owned}": "owned"},
                 "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                 "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": cluster_name},
                 "ForAllValues:StringEquals": {"aws:TagKeys": [
                     "eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]}}},
            {"Sid": "AllowScopedDeletion", "Effect": "Allow",
             "Resource": [f"{ec2}:*:instance/*", f"{ec2}:*:launch-template/*"],
             "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
             "Condition": {"StringEquals": {f"aws:ResourceTag/{owned}": "owned"},
                           "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}}},
        ),
        "iam-integration": policy_document(
            {"Sid": "AllowPassingInstanceRole", "Effect": "Allow", "Resource": node_role_arn,
             "Action": "iam:PassRole",
             "Condition": {"StringEquals": {"iam:PassedToService": [
                 "ec2.amazonaws.com", "ec2.amazonaws.com.cn"]}}},
            {"Sid": "AllowScopedInstanceProfileCreationActions", "Effect": "Allow",
             "Resource": profiles, "Action": ["iam:CreateInstanceProfile"],
             "Condition": {"StringEquals": {
                 f"aws:RequestTag/{owned}": "owned",
                 "aws:RequestTag/eks:eks-cluster-name": cluster_name,
                 "aws:RequestTag/topology.kubernetes.io/region": region},
                 "StringLike": {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}}},
            {"Sid": "AllowScopedInstanceProfileTagActions", "Effect": "Allow",
             "Resource": profiles, "Action": ["iam:TagInstanceProfile"],
             "Condition": {"StringEquals": {
                 f"aws:ResourceTag/{owned}": "owned",
                 "aws:ResourceTag/topology.kubernetes.io/region": region,
                 f"aws:RequestTag/{owned}": "owned",
                 "aws:RequestTag/eks:eks-cluster-name": cluster_name,
                 "aws:RequestTag/topology.kubernetes.io/region": region},
                 "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*",
                                "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}}},
            {"Sid": "AllowScopedInstanceProfileActions", "Effect": "Allow",
             "Resource": profiles,
             "Action": ["iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile",
                        "iam:DeleteInstanceProfile"],
             "Condition": {"StringEquals": {
                 f"aws:ResourceTag/{owned}": "owned",
                 "aws:ResourceTag/topology.kubernetes.io/region": region},
                 "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"}}},
        ),
        "eks-integration": policy_document(
            {"Sid": "AllowAPIServerEndpointDiscovery", "Effect": "Allow",
             "Resource": cluster_arn, "Action": "eks:DescribeCluster"}),
        "interruption": policy_document(
            {"Sid": "AllowInterruptionQueueActions", "Effect": "Allow", "Resource": queue_arn,
             "Action": ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"]}),
        "resource-discovery": policy_document(
            {"Sid": "AllowRegionalReadActions", "Effect": "Allow", "Resource": "*",
             "Action": ["ec2:DescribeCapacityReservations", "ec2:DescribeImages",
                        "ec2:DescribeInstances", "ec2:DescribeInstanceStatus",
                        "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes",
                        "ec2:DescribeLaunchTemplates", "ec2:DescribePlacementGroups",
                        "ec2:DescribeSecurityGroups", "ec2:DescribeSpotPriceHistory",
                        "ec2:DescribeSubnets"],
             "Condition": {"StringEquals": {"aws:RequestedRegion": region}}},
            {"Sid": "AllowSSMReadActions", "Effect": "Allow",
             "Resource": f"{arn}:ssm:{region}::parameter/aws/service/*",
             "Action": "ssm:GetParameter"},
            {"Sid": "AllowPricingReadActions", "Effect": "Allow", "Resource": "*",
             "Action": "pricing:GetProducts"},
            {"Sid": "AllowUnscopedInstanceProfileListAction", "Effect": "Allow",
             "Resource": "*", "Action": "iam:ListInstanceProfiles"},
            {"Sid": "AllowInstanceProfileReadActions", "Effect": "Allow", "Resource": profiles,
             "Action": "iam:GetInstanceProfile"}),
    }


def queue_policy(queue_arn: str) -> str:
    """EventBridge (and SQS itself) may send; nothing may use the queue without TLS."""
    return json.dumps({"Version": "2012-10-17", "Id": "EC2InterruptionPolicy", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": ["events.amazonaws.com",
                                                      "sqs.amazonaws.com"]},
         "Action": "sqs:SendMessage", "Resource": queue_arn},
        {"Sid": "DenyHTTP", "Effect": "Deny", "Principal": "*", "Action": "sqs:*",
         "Resource": queue_arn, "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    ]}, sort_keys=True)


def controller_values(*, cluster_name: str, region: str, queue_name: str, node_repair: bool,
                      high_availability: bool) -> dict[str, Any]:
    """The karpenter chart's values (every key exists in the chart's values.yaml at v1.14.1; a
    test checks it). The chart's own affinity (`karpenter.sh/nodepool DoesNotExist`) already
    keeps the controller off the nodes it manages; the node selector puts it on the system
    nodes."""
    return {
        "settings": {
            "clusterName": cluster_name,
            "interruptionQueue": queue_name,
            "featureGates": {"nodeRepair": node_repair},
        },
        # The chart has no region setting and pods can't reach IMDS (hop limit 1): the AWS SDK
        # takes the region from the environment.
        "controller": {"env": [{"name": "AWS_REGION", "value": region}],
                       "resources": resources("500m", "1Gi", memory_limit="1Gi")},
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
        "replicas": 2 if high_availability else 1,
        # Merged by Helm into the chart's own `kubernetes.io/os: linux`.
        "nodeSelector": SYSTEM_NODE_SELECTOR,
        # No chart ServiceMonitor: the monitoring stack comes later; components/node_health.py
        # scrapes the controller's metrics Service.
    }


@dataclass
class KarpenterArgs:
    cluster_name: str
    region: str
    cluster: aws.eks.Cluster
    private_subnet_ids: pulumi.Input[Sequence[str]]
    subnet_count: int
    """How many private subnets there are (known from config), so each gets its own tag."""
    node_repair: bool = True
    high_availability: bool = False
    instance_tags: Mapping[str, str] = field(default_factory=dict)
    depends_on: Sequence[pulumi.Resource] = ()
    """What must exist before the controller runs (the system nodes, the Pod Identity agent)."""


class Karpenter(pulumi.ComponentResource):
    node_role: aws.iam.Role
    release: pulumi.Resource

    def __init__(self, name: str, args: KarpenterArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:karpenter:Karpenter", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        partition = partition_of(self)
        account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)).account_id

        # ---- the nodes' identity, and their way into the cluster
        self.node_role = aws.iam.Role(
            f"{name}-node-role", description=f"Karpenter GPU nodes of {args.cluster_name}",
            assume_role_policy=service_trust_policy("ec2.amazonaws.com"), opts=child)
        node_policies = [aws.iam.RolePolicyAttachment(
            f"{name}-node-role-{policy}", role=self.node_role.name,
            policy_arn=aws_managed_policy(partition, policy), opts=child)
            for policy in NODE_ROLE_POLICIES]
        access_entry = aws.eks.AccessEntry(
            f"{name}-node-access", cluster_name=args.cluster.name,
            principal_arn=self.node_role.arn, type="EC2_LINUX", opts=child)

        # ---- interruption: EventBridge -> SQS -> the controller cordons and drains ahead
        queue = aws.sqs.Queue(
            f"{name}-interruption", name=f"{args.cluster_name}-karpenter",
            message_retention_seconds=300, sqs_managed_sse_enabled=True, opts=child)
        queue_access = aws.sqs.QueuePolicy(
            f"{name}-interruption", queue_url=queue.url, policy=queue.arn.apply(queue_policy),
            opts=child)
        event_rules = []
        for event, pattern in INTERRUPTION_EVENTS.items():
            event_rule = aws.cloudwatch.EventRule(
                f"{name}-{event}", description=f"Karpenter interruption: {event}",
                event_pattern=json.dumps(pattern, sort_keys=True), opts=child)
            event_rules.append(aws.cloudwatch.EventTarget(
                f"{name}-{event}", rule=event_rule.name, arn=queue.arn,
                target_id="KarpenterInterruptionQueueTarget", opts=child))

        # ---- discovery tags (EC2NodeClass selector terms match them)
        subnet_ids = pulumi.Output.from_input(args.private_subnet_ids)
        tags = [aws.ec2.Tag(
            f"{name}-discovery-subnet-{index}", resource_id=subnet_ids[index],
            key=DISCOVERY_TAG, value=args.cluster_name, opts=child)
            for index in range(args.subnet_count)]
        tags.append(aws.ec2.Tag(
            f"{name}-discovery-cluster-sg",
            resource_id=args.cluster.vpc_config.cluster_security_group_id,
            key=DISCOVERY_TAG, value=args.cluster_name, opts=child))

        # ---- the controller's identity: Pod Identity, the template's policies
        role = aws.iam.Role(
            f"{name}-controller", description=f"Karpenter controller of {args.cluster_name}",
            assume_role_policy=service_trust_policy("pods.eks.amazonaws.com", tag_session=True),
            opts=child)
        documents = pulumi.Output.all(partition, account, self.node_role.arn, queue.arn).apply(
            lambda v: controller_policies(partition=v[0], region=args.region, account_id=v[1],
                                          cluster_name=args.cluster_name, node_role_arn=v[2],
                                          queue_arn=v[3]))
        policies = [aws.iam.RolePolicy(
            f"{name}-controller-{policy}", role=role.name, policy=documents[policy], opts=child)
            for policy in ("node-lifecycle", "iam-integration", "eks-integration",
                           "interruption", "resource-discovery")]
        association = aws.eks.PodIdentityAssociation(
            f"{name}-controller", cluster_name=args.cluster.name, namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT, role_arn=role.arn, opts=child)

        # ---- the controller: CRDs first, then the release, on the system nodes
        crds = helm_release(self, name, "karpenter-crd", name="karpenter-crd",
                            namespace=NAMESPACE, values={}, depends_on=args.depends_on)
        values = queue.name.apply(lambda queue_name: controller_values(
            cluster_name=args.cluster_name, region=args.region, queue_name=queue_name,
            node_repair=args.node_repair, high_availability=args.high_availability))
        # Everything the controller uses exists before it and is deleted after it: on destroy
        # it is still running to terminate its nodes.
        self.release = helm_release(
            self, name, "karpenter", name="karpenter", namespace=NAMESPACE, values=values,
            depends_on=[crds, *args.depends_on, *node_policies, access_entry,
                        queue_access, *event_rules, *tags, *policies, association])
        self.crds = crds
        self.node_role_name: pulumi.Output[str] = self.node_role.name
        self.queue_name: pulumi.Output[str] = queue.name
        self.register_outputs({"nodeRoleName": self.node_role_name, "queueName": queue.name,
                               "controllerRoleArn": role.arn, "release": self.release.status})
