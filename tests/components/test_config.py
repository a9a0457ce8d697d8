"""Every configuration rule: a bad value gives an error naming the full key, and nothing is
registered. Plus a property test that no random bad config ever produces a resource."""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components import versions
from components.config.capacity import node_room
from components.config.errors import ConfigError
from components.config.network import NetworkConfig
from components.config.quantities import cpu_millicores, memory_mib
from components.config.rules.models import RESERVED_NAMESPACES
from components.config.runtime import _decode
from components.config.stack import StackConfig
from components.config.stack_file import duplicate_keys
from components.config.types import LOG_RETENTION_DAYS
from components.config.validate import parse
from tests.harness import evaluate, set_path
from tests.harness import stack_config as engine_config

DEV_ARN = "arn:aws:iam::111122223333:role/mlserve-platform-admin"


def rejected(stack: str, changes: dict[str, object], remove: tuple[str, ...] = ()) -> ConfigError:
    config = engine_config(stack)
    for key in remove:
        config.pop(key)
    for path, value in changes.items():
        config = set_path(config, path, value)
    graph = evaluate(stack, config=config)
    assert isinstance(graph.error, ConfigError), f"expected a ConfigError, got {graph.error!r}"
    assert graph.resources == [], "a rejected config must register nothing"
    return graph.error


RULES = [
    # (stack, {path: bad value}, the message line expected)
    ("dev", {"environment": "qa"},
     "mlserve:environment: must be 'dev', 'staging', 'prod' or 'local', got 'qa'"),
    ("dev", {"region": "mars-north"}, "mlserve:region: must be an AWS region where EKS is offered"),
    ("dev", {"region": "us-west-9"}, "mlserve:region: must be an AWS region where EKS is offered"),
    ("dev", {"region": "cn-north-1"},
     "mlserve:cluster.adminPrincipalArns[0]: must be in partition 'aws-cn' of region cn-north-1"),
    ("dev", {"accountId": "1234"}, "mlserve:accountId: must match"),
    ("dev", {"cluster.adminPrincipalArns[1]": "arn:aws:iam::999999999999:role/x"},
     "mlserve:cluster.adminPrincipalArns[1]: must be in the stack's account 111122223333"),
    ("dev", {"modelBucket.mode": "existing", "modelBucket.name": "bucket-1",
             "modelBucket.readerRoleArn": "arn:aws:iam::999999999999:role/reader"},
     "mlserve:modelBucket.readerRoleArn: must be in the stack's account 111122223333"),
    ("dev", {"prodWaivers": ["singleNatGateway"]},
     "mlserve:prodWaivers: only applies to environment prod, got 'dev'"),
    ("dev", {"prodWaivers": ["everything"]},
     "mlserve:prodWaivers[0]: must be 'singleNatGateway' or 'spotModelCapacity'"),
    ("dev", {"network.availabilityZones": ["us-east-1a", "us-east-1b"]},
     "mlserve:network.availabilityZones[0]: must be a standard AZ of us-west-2"),
    ("dev", {"network.availabilityZones": ["us-west-2a", "us-west-2a"]},
     "mlserve:network.availabilityZones: must not repeat a zone"),
    ("dev", {"cluster.publicAccessCidrs": ["10.0.0.0/8", "203.0.113.0/24"]},
     "mlserve:cluster.publicAccessCidrs: ['10.0.0.0/8'] are private or reserved addresses"),
    ("dev", {"cluster.publicAccessCidrs": ["100.64.0.0/16"]},
     "mlserve:cluster.publicAccessCidrs: ['100.64.0.0/16'] are private or reserved addresses"),
    ("dev", {"cluster.addonVersions": {"coredns": "latest"}},
     "mlserve:cluster.addonVersions.coredns: must match"),
    ("dev", {"cluster.previewPrincipalArns": [DEV_ARN]},
     "mlserve:cluster.previewPrincipalArns: must not also be admins"),
    ("dev", {"systemNodeGroup.instanceTypes": ["m7i.larg"]},
     "mlserve:systemNodeGroup.instanceTypes: must be EC2 instance types like m7i.large"),
    ("dev", {"systemNodeGroup.instanceTypes": ["m7g.large"]},
     "mlserve:systemNodeGroup.instanceTypes: must be x86_64 instance types"),
    ("dev", {"platform.monitoring.alerts.webhook": "slack"},
     "mlserve:platform.monitoring.alerts.webhook: needs the secret alertWebhookUrl"),
    ("dev", {"platform.monitoring.alerts.slackChannel": "#ml-alerts"},
     "mlserve:platform.monitoring.alerts.slackChannel: only with webhook slack"),
    ("dev", {"platform.monitoring.alerts.snsTopic": "topic"},
     "mlserve:platform.monitoring.alerts.snsTopic: must match"),
    ("dev", {"platform.monitoring.alerts.snsTopic": "arn:aws:sns:us-west-2:999999999999:t"},
     "mlserve:platform.monitoring.alerts.snsTopic: must be in the stack's account"),
    ("dev", {"platform.monitoring.alertmanager": False,
             "platform.monitoring.alerts.snsTopic": "create"},
     "mlserve:platform.monitoring.alerts: needs platform.monitoring.enabled and alertmanager"),
    ("dev", {"tags": {"aws:owner": "me"}}, "mlserve:tags: must not use the reserved aws: prefix"),
    ("dev", {"network.azCount": 1}, "mlserve:network.azCount: must be >= 2, got 1"),
    ("dev", {"network.azCount": 7}, "mlserve:network.azCount: must be <= 6, got 7"),
    ("dev", {"network.vpcCidr": "10.20.0.1/16"},
     "mlserve:network.vpcCidr: must be an IPv4 CIDR with no host bits set"),
    ("dev", {"network.vpcCidr": "10.0.0.0/8"}, "mlserve:network.vpcCidr: must be between /16 and /22"),
    ("dev", {"network.natGateways": "none"},
     "mlserve:network.natGateways: must be 'single' or 'perAz', got 'none'"),
    ("dev", {"network.privateSubnetCidrs": ["10.20.0.0/20", "10.99.0.0/20"]},
     "mlserve:network.privateSubnetCidrs[1]: must lie inside vpcCidr 10.20.0.0/16"),
    ("dev", {"network.privateSubnetCidrs": ["10.20.0.0/20", "10.20.16.0/20"],
             "network.publicSubnetCidrs": ["10.20.8.0/24", "10.20.200.0/24"]},
     "mlserve:network.publicSubnetCidrs[0]: overlaps 10.20.0.0/20"),
    ("dev", {"network.privateSubnetCidrs": ["10.20.0.0/20"]},
     "mlserve:network.privateSubnetCidrs: must list azCount (2) CIDRs, got 1"),
    ("dev", {"network.availabilityZones": ["us-west-2a"]},
     "mlserve:network.availabilityZones: must list azCount (2) zones, got 1"),
    ("dev", {"network.flowLogRetentionDays": 11}, "mlserve:network.flowLogRetentionDays: must be 0 or one of"),
    ("dev", {"network.existingVpc": {"vpcId": "vpc-0123456789abcdef0",
                                     "privateSubnetIds": ["subnet-0a1b2c3d", "subnet-1a1b2c3d"],
                                     "publicSubnetIds": ["subnet-2a1b2c3d", "subnet-3a1b2c3d"]}},
     "mlserve:network.vpcCidr: must not be set together with existingVpc"),
    ("dev", {"network": {"existingVpc": {"vpcId": "vpc-xyz", "privateSubnetIds": ["subnet-0a1b2c3d"],
                                         "publicSubnetIds": ["subnet-2a1b2c3d", "subnet-3a1b2c3d"]}}},
     "mlserve:network.existingVpc.vpcId: must match"),
    ("dev", {"network": {"existingVpc": {"vpcId": "vpc-0123456789abcdef0",
                                         "privateSubnetIds": ["subnet-0a1b2c3d"],
                                         "publicSubnetIds": ["subnet-2a1b2c3d", "subnet-3a1b2c3d"]}}},
     "mlserve:network.existingVpc.privateSubnetIds: must have at least 2 item(s)"),
    ("dev", {"network": {"existingVpc": {"vpcId": "vpc-0123456789abcdef0",
                                         "privateSubnetIds": ["subnet-0a1b2c3d", "subnet-1a1b2c3d"],
                                         "publicSubnetIds": ["subnet-0a1b2c3d", "subnet-3a1b2c3d"]}}},
     "mlserve:network.existingVpc.publicSubnetIds: must not also be private subnets"),
    ("dev", {"cluster.version": "1.20"}, "mlserve:cluster.version: must be one of"),
    ("dev", {"cluster.version": 1.3},
     "mlserve:cluster.version: must be a quoted string such as \"1.35\", got the number 1.3"),
    ("dev", {"cluster.publicAccessCidrs": ["198.51.100.7/24"]},
     "mlserve:cluster.publicAccessCidrs[0]: must be an IPv4 CIDR with no host bits set"),
    ("dev", {"cluster.adminPrincipalArns": []},
     "mlserve:cluster.adminPrincipalArns: must name at least one IAM role or user"),
    ("dev", {"cluster.adminPrincipalArns": [DEV_ARN, DEV_ARN]},
     "mlserve:cluster.adminPrincipalArns: must not repeat an ARN"),
    ("dev", {"cluster.adminPrincipalArns": ["arn:aws:iam::111122223333:root"]},
     "mlserve:cluster.adminPrincipalArns[0]: must match"),
    ("dev", {"cluster.logTypes": ["api"]},
     "mlserve:cluster.logTypes: must include ['api', 'audit', 'authenticator'], missing ['audit', 'authenticator']"),
    ("dev", {"cluster.logRetentionDays": 10}, "mlserve:cluster.logRetentionDays: must be one of"),
    ("dev", {"cluster.addonVersions": {"nginx": "v1"}}, "mlserve:cluster.addonVersions.nginx"),
    ("dev", {"cluster.name": "-bad"}, "mlserve:cluster.name: must match"),
    ("dev", {"systemNodeGroup.instanceTypes": ["g5.xlarge"]},
     "mlserve:systemNodeGroup.instanceTypes: must be CPU instance types"),
    ("dev", {"systemNodeGroup.minSize": 0}, "mlserve:systemNodeGroup.minSize: must be >= 1, got 0"),
    ("dev", {"systemNodeGroup.maxSize": 1}, "mlserve:systemNodeGroup.maxSize: must be >= minSize (2), got 1"),
    ("dev", {"gpuNodeGroups[0].minSize": 2, "gpuNodeGroups[0].maxSize": 1},
     "mlserve:gpuNodeGroups[0].maxSize: must be >= minSize (2), got 1"),
    ("dev", {"gpuNodeGroups[0].desiredSize": 5},
     "mlserve:gpuNodeGroups[0].desiredSize: must be between minSize (0) and maxSize (2), got 5"),
    ("dev", {"gpuNodeGroups[0].minSize": -1}, "mlserve:gpuNodeGroups[0].minSize: must be >= 0, got -1"),
    ("dev", {"gpuNodeGroups[0].instanceTypes": ["m5.large"]},
     "mlserve:gpuNodeGroups[0].instanceTypes: must be GPU instance types of families"),
    ("dev", {"gpuNodeGroups[0].instanceTypes": ["g4dn.xlarge", "g5.xlarge"]},
     "mlserve:gpuNodeGroups[0].instanceTypes: must all have the same GPU model and count"),
    ("dev", {"gpuNodeGroups[0].capacityType": "RESERVED"},
     "mlserve:gpuNodeGroups[0].capacityType: must be 'ON_DEMAND' or 'SPOT', got 'RESERVED'"),
    ("dev", {"gpuNodeGroups[0].amiType": "AL2_x86_64_GPU"}, "mlserve:gpuNodeGroups[0].amiType: must be"),
    ("dev", {"gpuNodeGroups[0].diskSizeGib": 20}, "mlserve:gpuNodeGroups[0].diskSizeGib: must be >= 100, got 20"),
    ("dev", {"gpuNodeGroups[0].name": "T4_Spot"}, "mlserve:gpuNodeGroups[0].name: must match"),
    ("dev", {"gpuNodeGroups[0].maxsize": 3},
     "mlserve:gpuNodeGroups[0].maxsize: unknown key; allowed keys here: amiType, capacityType"),
    ("dev", {"gpuNodeGroups": []},
     "mlserve:gpuNodeGroups: must have at least 1 item(s) with cluster.mode eks"),
    ("dev", {"cluster.mode": "existing"}, "mlserve:cluster.kubeconfig: required with mode existing"),
    ("dev", {"cluster.mode": "existing", "cluster.kubeconfig": "/k"},
     "mlserve:platform.loadBalancerController.enabled: needs cluster.mode eks"),
    ("dev", {"cluster.context": "kind"}, "mlserve:cluster.kubeconfig: kubeconfig and context only with mode existing"),
    ("dev", {"modelBucket.mode": "existing"}, "mlserve:modelBucket.name: required with mode existing"),
    ("dev", {"modelBucket.mode": "existing", "modelBucket.name": "bucket-1"},
     "mlserve:modelBucket.readerRoleArn: required with mode existing"),
    ("dev", {"modelBucket.mode": "s3Compatible", "modelBucket.name": "bucket-1"},
     "mlserve:modelBucket.endpoint: required with mode s3Compatible"),
    ("dev", {"platform.minio.enabled": True}, "mlserve:platform.minio.enabled: needs modelBucket"),
    ("dev", {"modelBucket.endpoint": "http://x:9000"},
     "mlserve:modelBucket.endpoint: not with mode create"),
    ("dev", {"modelServing.backend": "seldon", "modelBucket.mode": "s3Compatible",
             "modelBucket.name": "bucket-1", "modelBucket.endpoint": "http://x:9000",
             "platform.minio.enabled": True, "cluster.mode": "existing",
             "cluster.kubeconfig": "/k", "platform.loadBalancerController.enabled": False,
             "platform.clusterAutoscaler.enabled": False},
     "mlserve:modelServing.backend: seldon reads S3 through IRSA only"),
    ("dev", {"platform.istio.gatewayNodePort": 30080},
     "mlserve:platform.istio.gatewayNodePort: needs gatewayServiceType NodePort"),
    ("dev", {"modelServing.models.cifar10.gpus": 0},
     "mlserve:modelServing.models.cifar10.gpuPool: not with gpus 0"),
    ("dev", {"gpuNodeGroups[1]": {"name": "t4-spot", "instanceTypes": ["g4dn.xlarge"]}},
     "mlserve:gpuNodeGroups[1].name: must be unique, got 't4-spot' twice"),
    ("dev", {"modelBucket.encryption": "none"}, "mlserve:modelBucket.encryption: must be 'kms' or 's3'"),
    ("dev", {"modelBucket.noncurrentVersionExpirationDays": 0},
     "mlserve:modelBucket.noncurrentVersionExpirationDays: must be >= 1, got 0"),
    ("dev", {"modelBucket.forceDestroy": "maybe"}, "mlserve:modelBucket.forceDestroy: must be true or false"),
    ("dev", {"modelServing.namespace": "Models"}, "mlserve:modelServing.namespace: must match"),
    ("dev", {"clsuter": {}}, "mlserve:clsuter: unknown key; allowed keys here: accountId, "
                            "alertWebhookUrl, cluster, environment"),
    ("dev", {"platform.certManager.enabled": False},
     "mlserve:platform.kserve.enabled: needs certManager.enabled, which is false"),
    ("dev", {"platform.istio.enabled": False},
     "mlserve:platform.kserve.enabled: needs istio.enabled, which is false"),
    ("dev", {"platform.loadBalancerController.enabled": False},
     "mlserve:platform.istio.enabled: needs loadBalancerController.enabled, which is false"),
    ("dev", {"platform.monitoring.enabled": False},
     "mlserve:platform.dcgmExporter.enabled: needs monitoring.enabled, which is false"),
    ("dev", {"platform.monitoring.retention": "two weeks"}, "mlserve:platform.monitoring.retention: must match"),
    ("dev", {"platform.monitoring.prometheusStorageGib": 1},
     "mlserve:platform.monitoring.prometheusStorageGib: must be >= 10, got 1"),
    ("dev", {"platform.clusterAutoscaler.expander": "priority"},
     "mlserve:platform.clusterAutoscaler.expander: must be"),
    ("dev", {"platform.clusterAutoscaler.scaleDownGpuUtilizationThreshold": 1.5},
     "mlserve:platform.clusterAutoscaler.scaleDownGpuUtilizationThreshold: must be <= 1"),
    ("dev", {"platform.istio.gatewayScheme": "public"}, "mlserve:platform.istio.gatewayScheme: must be"),
    ("dev", {"platform.istio.gatewaySourceRanges": ["1.2.3.4/8"]},
     "mlserve:platform.istio.gatewaySourceRanges[0]: must be an IPv4 CIDR"),
    ("dev", {"platform.kserve.ingressDomain": "Not A Domain"}, "mlserve:platform.kserve.ingressDomain: must match"),
    ("dev", {"platform.kserve.tritonImageTag": "latest"}, "mlserve:platform.kserve.tritonImageTag: must match"),
    ("dev", {"platform.keda.enable": True}, "mlserve:platform.keda.enable: unknown key; allowed keys here: enabled"),
    ("dev", {"modelServing.models.cifar10.autoscaler": "hpa", "modelServing.models.cifar10.minReplicas": 1,
             "platform.metricsServer.enabled": False},
     "mlserve:modelServing.models.cifar10.autoscaler: hpa scales on CPU and needs platform.metricsServer"),
    # Models that could never be scheduled or served.
    ("dev", {"modelServing.models.cifar10.cpu": "0"},
     "mlserve:modelServing.models.cifar10.cpu: must be more than 0, got '0'"),
    ("dev", {"modelServing.models.cifar10.cpu": "2Gi"},
     "mlserve:modelServing.models.cifar10.cpu: must be a CPU quantity such as"),
    ("dev", {"modelServing.models.cifar10.memory": "8"},
     "mlserve:modelServing.models.cifar10.memory: must carry a unit such as Mi or Gi"),
    ("dev", {"modelServing.models.cifar10.memory": "0Gi"},
     "mlserve:modelServing.models.cifar10.memory: must be more than 0"),
    ("dev", {"modelServing.models.cifar10.cpu": "16"},
     "mlserve:modelServing.models.cifar10.cpu: 16 (+100m for Istio's sidecar) doesn't fit a "
     "g4dn.xlarge of pool 't4-spot': 3520m is left for models"),
    ("dev", {"modelServing.models.cifar10.memory": "64Gi"},
     "mlserve:modelServing.models.cifar10.memory: 64Gi (+128Mi for Istio's sidecar) doesn't fit "
     "a g4dn.xlarge of pool 't4-spot'"),
    ("staging", {"modelServing.models.cifar10.gpus": 0, "modelServing.models.cifar10.gpuPool": None,
                 "modelServing.models.cifar10.cpu": "4"},
     "mlserve:modelServing.models.cifar10.cpu: 4 (+100m for Istio's sidecar) doesn't fit a "
     "m7i.large of the system node group"),
    ("prod", {"modelServing.models.cifar10.minReplicas": 8},
     "mlserve:modelServing.models.cifar10.minReplicas: 9 replica(s) are needed during a rollout"),
    ("staging", {"modelServing.models.cifar10.gpus": 2},
     "mlserve:modelServing.models.cifar10.gpus: pool 'a10g' nodes have 1 GPU(s), got 2"),
    ("dev", {"platform.nvidiaDevicePlugin.enabled": False},
     "mlserve:gpuNodeGroups[0].amiType: AL2023_x86_64_NVIDIA needs "
     "platform.nvidiaDevicePlugin.enabled"),
    ("dev", {"platform.clusterAutoscaler.enabled": False, "gpuCapacity.engine": "nodeGroups"},
     "mlserve:gpuNodeGroups[0].minSize: 0 (with no desiredSize) needs "
     "platform.clusterAutoscaler.enabled"),
    ("dev", {"modelServing.namespace": "kube-system"},
     "mlserve:modelServing.namespace: 'kube-system' belongs to the cluster or the platform"),
    ("dev", {"modelServing.namespace": "monitoring"},
     "mlserve:modelServing.namespace: 'monitoring' belongs to the cluster or the platform"),
    ("dev", {"modelServing.models": {"a" * 38: {"gpuPool": "t4-spot"}}},
     f"mlserve:modelServing.models.{'a' * 38}: model names may have at most 37 characters "
     "on kserve (38 here): KEDA's HPA (stable) 'keda-hpa-" + "a" * 38 + "-stable-predictor' would be "
     "64 characters, over 63"),
    ("dev", {"modelServing.models": {"CIFAR": {}}},
     "mlserve:modelServing.models.CIFAR.[key]: must match ^[a-z]([-a-z0-9]*[a-z0-9])?$"),
    ("prod", {"modelBucket.protect": False}, "mlserve:modelBucket.protect: must be true in prod, got false"),
    ("prod", {"modelBucket.forceDestroy": True}, "mlserve:modelBucket.forceDestroy: must be false in prod"),
    ("prod", {"cluster.publicAccessCidrs": ["0.0.0.0/0"]},
     "mlserve:cluster.publicAccessCidrs: admits 4,294,967,296 addresses in prod"),
    ("prod", {"cluster.publicAccessCidrs": ["0.0.0.0/1", "128.0.0.0/1"]},
     "mlserve:cluster.publicAccessCidrs: admits 4,294,967,296 addresses in prod"),
    ("prod", {"cluster.publicAccessCidrs": ["198.51.0.0/16", "203.0.113.0/24"]},
     "mlserve:cluster.publicAccessCidrs: admits 65,792 addresses in prod (at most 65,536"),
    ("prod", {"cluster.deletionProtection": False},
     "mlserve:cluster.deletionProtection: must be true in prod, got false"),
    ("prod", {"cluster.logRetentionDays": 1},
     "mlserve:cluster.logRetentionDays: must be >= 365 in prod (audit trail), got 1"),
    ("prod", {"network.flowLogRetentionDays": 0},
     "mlserve:network.flowLogRetentionDays: 0 turns flow logs off, not allowed in prod"),
    ("prod", {"network.flowLogRetentionDays": 30},
     "mlserve:network.flowLogRetentionDays: must be >= 90 in prod, got 30"),
    ("prod", {"network.natGateways": "single"},
     "mlserve:network.natGateways: must be perAz in prod (or waive it"),
    ("prod", {"platform.highAvailability": False},
     "mlserve:platform.highAvailability: must be true (or unset) in prod, got false"),
    ("prod", {"systemNodeGroup.minSize": 1},
     "mlserve:systemNodeGroup.minSize: must be >= 2 in prod"),
    ("prod", {"gpuNodeGroups[0].capacityType": "SPOT"},
     "mlserve:gpuNodeGroups[0].capacityType: pool 'a10g' serves models: must be ON_DEMAND"),
    ("prod", {"platform.monitoring.alerts": {}},
     "mlserve:platform.monitoring.alerts: must name a receiver in prod"),
    ("prod", {"platform.monitoring.alertmanager": False},
     "mlserve:platform.monitoring.alertmanager: must be true in prod"),
    ("prod", {"platform.monitoring.enabled": False, "platform.dcgmExporter.enabled": False},
     "mlserve:platform.monitoring.enabled: must be true in prod"),
    ("prod", {"cluster.adminPrincipalArns[0]": "arn:aws:iam::123412341234:role/admin"},
     "mlserve:cluster.adminPrincipalArns[0]: must be in the stack's account 777788889999"),
    ("prod", {"modelServing.models.cifar10.minReplicas": 1},
     "mlserve:modelServing.models.cifar10.minReplicas: must be >= 2 in prod, got 1"),
]


@pytest.mark.parametrize(("stack", "changes", "expected"), RULES,
                         ids=[f"{s}:{','.join(c)}" for s, c, _ in RULES])
def test_rule_rejects_bad_value_and_registers_nothing(stack, changes, expected):
    error = rejected(stack, changes)
    assert any(problem.startswith(expected) for problem in error.problems), error.problems


@pytest.mark.parametrize("key", ["environment", "region", "cluster"])
def test_required_keys(key):
    error = rejected("dev", {}, remove=(f"mlserve:{key}",))
    assert f"mlserve:{key}: is required" in error.problems


def test_prod_needs_the_account_pinned():
    error = rejected("prod", {}, remove=("mlserve:accountId",))
    assert error.problems == ["mlserve:accountId: is required in prod: the AWS provider then "
                              "refuses credentials of any other account"]


def test_principals_of_several_accounts_need_the_account_named():
    error = rejected("dev", {"cluster.adminPrincipalArns[1]": "arn:aws:iam::999999999999:role/x"},
                     remove=("mlserve:accountId",))
    assert error.problems == ["mlserve:accountId: the stack's principals span accounts "
                              "['111122223333', '999999999999']: set accountId to the stack's own"]


def test_the_account_pins_the_aws_provider(prod):
    provider = prod.one("pulumi:providers:aws")
    assert json.loads(provider.inputs["allowedAccountIds"]) == ["777788889999"]


@pytest.mark.parametrize(("changes", "waiver"), [
    ({"network.natGateways": "single"}, "singleNatGateway"),
    ({"gpuNodeGroups[0].capacityType": "SPOT"}, "spotModelCapacity"),
])
def test_prod_choices_are_waived_explicitly_and_visibly(changes, waiver):
    """A choice, not a must: accepted in prod only with its waiver, which tags every AWS
    resource (the policy pack reads it there)."""
    rejected("prod", changes)
    config = engine_config("prod")
    for path, value in {**changes, "prodWaivers": [waiver]}.items():
        config = set_path(config, path, value)
    graph = evaluate("prod", config=config)
    assert graph.error is None, graph.error
    tags = json.loads(graph.one("pulumi:providers:aws").inputs["defaultTags"])["tags"]
    assert tags["mlserve:prod-waivers"] == waiver


def test_a_tag_cannot_pose_as_a_waiver():
    graph = evaluate("dev", config=set_path(engine_config("dev"), "tags",
                                            {"mlserve:prod-waivers": "singleNatGateway"}))
    tags = json.loads(graph.one("pulumi:providers:aws").inputs["defaultTags"])["tags"]
    assert "mlserve:prod-waivers" not in tags


def test_prod_boundaries_pass():
    """The floors themselves are allowed: two replicas, a /16, 365 days, 90 days of flow logs."""
    config = engine_config("prod")
    for path, value in {"modelServing.models.cifar10.minReplicas": 2,
                        "cluster.publicAccessCidrs": ["198.51.0.0/16"],
                        "cluster.logRetentionDays": 365,
                        "network.flowLogRetentionDays": 90}.items():
        config = set_path(config, path, value)
    assert evaluate("prod", config=config).error is None


def test_a_webhook_url_must_be_a_secret_and_is_never_echoed():
    config = set_path(engine_config("dev"), "platform.monitoring.alerts.webhook", "slack")
    config["mlserve:alertWebhookUrl"] = "http://hooks.example.com/T0/B0/s3cr3t"
    graph = evaluate("dev", config=config)
    assert isinstance(graph.error, ConfigError)
    assert graph.error.problems == [
        "mlserve:alertWebhookUrl: must be set with `pulumi config set --secret`, it is stored in "
        "plain text", "mlserve:alertWebhookUrl: must be an https:// URL"]
    graph = evaluate("dev", config=config, secret_keys=["mlserve:alertWebhookUrl"])
    assert graph.error.problems == ["mlserve:alertWebhookUrl: must be an https:// URL"]
    assert "s3cr3t" not in str(graph.error)


def test_all_problems_are_reported_together():
    error = rejected("dev", {"network.azCount": 1, "cluster.version": "1.20",
                             "gpuNodeGroups[0].capacityType": "RESERVED", "typo": 1})
    paths = [p.split(": ", 1)[0] for p in error.problems]
    assert paths == ["mlserve:network.azCount", "mlserve:cluster.version",
                     "mlserve:gpuNodeGroups[0].capacityType", "mlserve:typo"]
    assert str(error).startswith("invalid stack configuration (4 problem(s)):")


def test_every_stage_reports_in_one_error():
    """The config, the model repository and the model plans are separate stages; one error lists
    the problems of all of them."""
    error = rejected("prod", {"network.azCount": 1, "modelBucket.forceDestroy": True,
                              "cluster.publicAccessCidrs": ["0.0.0.0/0"],
                              "modelServing.models.resnet": {"minReplicas": 2}})
    paths = [p.split(": ", 1)[0] for p in error.problems]
    assert paths == ["mlserve:network.azCount", "mlserve:modelBucket.forceDestroy",
                     "mlserve:cluster.publicAccessCidrs", "mlserve:modelServing.models.resnet"]
    assert "no such model" in error.problems[-1]


def test_a_model_repository_path_pointing_nowhere_names_the_key():
    error = rejected("prod", {"modelRepository.path": "no/such/folder",
                              "modelBucket.forceDestroy": True})
    assert error.problems == [
        "mlserve:modelBucket.forceDestroy: must be false in prod, got true",
        "mlserve:modelRepository.path: 'no/such/folder' is not a folder of the project (no "
        "model repository there)"]


def test_a_broken_model_is_reported_with_the_config_problems(tmp_path):
    from components import stack_inputs

    repo = tmp_path / "repo" / "broken"
    repo.mkdir(parents=True)
    (repo / "config.pbtxt").write_text("this is not a model config")
    raw = {k.split(":", 1)[1]: _decode(v) for k, v in engine_config("prod").items()
           if k.startswith("mlserve:")}
    raw["modelRepository"] = {"path": "repo"}
    raw["modelBucket"] = {**raw["modelBucket"], "forceDestroy": True}
    inputs, problems = stack_inputs.check(raw, [], tmp_path)
    assert inputs is None
    assert problems[0] == "mlserve:modelBucket.forceDestroy: must be false in prod, got true"
    assert len(problems) >= 2 and any("broken" in p for p in problems[1:]), problems


def test_rules_across_sections_still_report_when_a_section_is_invalid():
    """A section that fails validation hides nothing: every rule that doesn't read it runs."""
    error = rejected("prod", {"network.azCount": 1, "modelBucket.forceDestroy": True,
                              "cluster.publicAccessCidrs": ["0.0.0.0/0"]})
    paths = [p.split(": ", 1)[0] for p in error.problems]
    assert paths == ["mlserve:network.azCount", "mlserve:modelBucket.forceDestroy",
                     "mlserve:cluster.publicAccessCidrs"], error.problems


def test_a_rule_reading_an_invalid_section_is_skipped_not_crashed():
    # modelServing is invalid: the per-model rules can't run, the bucket rule still does.
    error = rejected("prod", {"modelServing.models.cifar10.minReplicas": "many",
                              "modelBucket.forceDestroy": True})
    assert error.problems == [
        "mlserve:modelServing.models.cifar10.minReplicas: must be an integer, got 'many'",
        "mlserve:modelBucket.forceDestroy: must be false in prod, got true"]


def test_a_pool_shared_by_models_must_hold_all_their_floors():
    models = {"cifar10": {"gpuPool": "a10g", "minReplicas": 4, "maxReplicas": 8},
              "resnet": {"gpuPool": "a10g", "minReplicas": 4, "maxReplicas": 8}}
    error = rejected("prod", {"modelServing.models": models})
    assert ("mlserve:gpuNodeGroups[0].maxSize: must be >= 10: the models on pool 'a10g' need "
            "that many nodes during a rollout") in "\n".join(error.problems), error.problems


def test_bottlerocket_pools_need_no_device_plugin():
    error = rejected("prod", {"platform.nvidiaDevicePlugin.enabled": False})
    paths = [p.split(": ", 1)[0] for p in error.problems]
    assert paths == ["mlserve:gpuNodeGroups[0].amiType"], error.problems  # l4 is Bottlerocket


def test_schedulability_problems_are_reported_with_every_other():
    error = rejected("dev", {"network.azCount": 1, "modelServing.models.cifar10.cpu": "16",
                             "platform.clusterAutoscaler.enabled": False,
                             "gpuCapacity.engine": "nodeGroups",
                             "modelServing.namespace": "kube-system"})
    paths = [p.split(": ", 1)[0] for p in error.problems]
    assert sorted(paths) == sorted([
        "mlserve:network.azCount", "mlserve:modelServing.models.cifar10.cpu",
        "mlserve:gpuNodeGroups[0].minSize", "mlserve:modelServing.namespace"]), error.problems


def test_a_key_listed_twice_in_the_stack_file_is_refused():
    from tests.harness import ROOT_DIR

    text = (ROOT_DIR / "Pulumi.staging.yaml").read_text()
    models = "  mlserve:modelServing:\n    models:\n      cifar10:\n"
    assert models in text
    twice = text.replace(models, models + "        cpu: \"1\"\n", 1).replace(
        "  mlserve:region: us-west-2\n", "  mlserve:region: us-west-2\n  mlserve:region: us-east-1\n")
    twice += "      cifar10:\n        minReplicas: 2\n"
    lines = twice.splitlines()
    CPU_TWO = '        cpu: "2"'  # noqa: N806

    def line_of(text: str, occurrence: int = 1) -> int:
        return [i for i, line in enumerate(lines, 1) if line == text][occurrence]

    graph = evaluate("staging", stack_file=twice)
    assert isinstance(graph.error, ConfigError) and graph.resources == []
    assert graph.error.problems[:3] == [
        "mlserve:region: listed twice in Pulumi.staging.yaml "
        f"(line {line_of('  mlserve:region: us-east-1', 0)})",
        "mlserve:modelServing.models.cifar10.cpu: listed twice in Pulumi.staging.yaml "
        f"(line {line_of(CPU_TWO, 0)})",
        "mlserve:modelServing.models.cifar10: listed twice in Pulumi.staging.yaml "
        f"(line {line_of('      cifar10:')})",
    ], graph.error.problems
    # Once each, the same file is fine.
    assert evaluate("staging", stack_file=text).error is None


def test_duplicate_keys_are_found_at_any_depth():
    text = "a:\n  b: [{c: 1, c: 2}]\n  b: 3\nd: 1\n"
    assert duplicate_keys(text) == [(("a", "b", 0, "c"), 2), (("a", "b"), 3)]


def test_the_longest_model_name_is_derived_from_the_generated_names():
    from components import naming

    longest = "m" * naming.MAX_MODEL_NAME_LENGTH
    assert naming.name_problems(longest) == []
    assert naming.name_problems(longest + "m")
    for name in naming.generated_names(longest):
        assert len(name.value) <= name.limit, name
    configuration = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    assert f"the longest allowed ({naming.MAX_MODEL_NAME_LENGTH} characters)" in configuration


def test_reserved_namespaces_include_every_platform_namespace():
    from components import (
        autoscaling,
        cert_manager,
        gpu_stack,
        mesh,
        monitoring,
        object_store,
        seldon,
        serving_platform,
    )

    for module in (cert_manager, gpu_stack, mesh, monitoring, object_store, seldon,
                   serving_platform):
        assert module.NAMESPACE in RESERVED_NAMESPACES, module.__name__
    assert autoscaling.KEDA_NAMESPACE in RESERVED_NAMESPACES


@pytest.mark.parametrize(("quantity", "millicores"), [("2", 2000), ("1.5", 1500), ("500m", 500)])
def test_cpu_quantities(quantity, millicores):
    assert cpu_millicores(quantity) == millicores


@pytest.mark.parametrize(("quantity", "mib"), [("8Gi", 8192), ("512Mi", 512), ("1Ti", 1024 ** 2),
                                               ("1G", 1000 ** 3 / 1024 ** 2)])
def test_memory_quantities(quantity, mib):
    assert memory_mib(quantity) == pytest.approx(mib)


def test_node_room_follows_the_eks_ami_reservations():
    """g4dn.xlarge: 4 vCPUs, 16 GiB, 29 pods by ENIs (110 assumed, the larger reservation)."""
    cpu, memory = node_room("g4dn.xlarge")
    reserved_cpu = 60 + 10 + 10  # 6 % of core 1, 1 % of core 2, 0.5 % of cores 3-4
    assert cpu == 4000 - reserved_cpu - 400
    assert memory == int(16 * 1024 * 0.925) - (11 * 110 + 255) - 100 - 512
    assert node_room("x9.unknown") is None


def test_promotion_readers_are_in_the_regions_partition():
    error = rejected("dev", {"modelBucket.promotionReaders": [
        "arn:aws-cn:iam::444455556666:role/mlserve-deployer"]})
    assert ("mlserve:modelBucket.promotionReaders[0]: must be in partition 'aws' of region "
            "us-west-2, got 'arn:aws-cn:iam::444455556666:role/mlserve-deployer'") in error.problems


def test_engine_strings_are_converted_by_field_type():
    # `pulumi config set --path network.azCount 3` stores the string "3".
    config = parse({
        "environment": "dev", "region": "us-west-2", "network": {"azCount": "3"},
        "cluster": {"adminPrincipalArns": [DEV_ARN]},
        "gpuNodeGroups": [{"name": "t4", "instanceTypes": ["g4dn.xlarge"], "maxSize": "2"}],
        "modelBucket": {"forceDestroy": "true"},
    })
    assert config.network.az_count == 3
    assert config.gpu_node_groups[0].max_size == 2
    assert config.model_bucket.force_destroy is True


def test_defaults_are_the_secure_ones():
    config = parse({
        "environment": "dev", "region": "us-west-2",
        "cluster": {"adminPrincipalArns": [DEV_ARN]},
        "gpuNodeGroups": [{"name": "t4", "instanceTypes": ["g4dn.xlarge"]}],
    })
    # The newest minor the project is tested against, so a new stack starts with the longest
    # standard-support window; bumping the supported list without the default fails here.
    assert config.cluster.version == max(versions.SUPPORTED_KUBERNETES_VERSIONS,
                                         key=lambda minor: tuple(map(int, minor.split("."))))
    assert config.cluster.public_access_cidrs == []  # private endpoint only
    assert config.network.nat_gateways == "perAz"
    assert config.model_bucket.encryption == "kms"
    assert config.model_bucket.force_destroy is False
    assert config.gpu_node_groups[0].ami_type == "AL2023_x86_64_NVIDIA"
    assert config.gpu_node_groups[0].capacity_type == "ON_DEMAND"
    assert config.gpu_node_groups[0].min_size == 0


def _sections(annotation: object) -> set[type[pydantic.BaseModel]]:
    """Every model class an annotation holds: a section, or one inside list/dict/Optional."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return {annotation}
    return {m for arg in getattr(annotation, "__args__", ()) for m in _sections(arg)}


def test_every_section_refuses_unknown_keys_and_stays_as_validated():
    """Each section, down to the last nested one, must forbid unknown keys (a typo is an error,
    never a silent default) and be frozen (a part cannot change a value after the cross-field
    rules approved it). Walked from the root so a new section cannot opt out by accident."""
    seen: set[type[pydantic.BaseModel]] = set()
    todo = [StackConfig]
    while todo:
        section = todo.pop()
        if section in seen:
            continue
        seen.add(section)
        assert section.model_config.get("extra") == "forbid", section.__name__
        assert section.model_config.get("frozen") is True, section.__name__
        for field in section.model_fields.values():
            todo.extend(_sections(field.annotation))
    assert len(seen) > 10, sorted(s.__name__ for s in seen)  # the walk reached the nested ones


def test_default_subnets_do_not_overlap_and_fit_the_vpc():
    import ipaddress

    for cidr, zones in (("10.0.0.0/16", 6), ("172.16.0.0/22", 3), ("10.8.0.0/18", 2)):
        network = NetworkConfig.model_validate({"vpcCidr": cidr, "azCount": zones})
        private, public = network.subnet_cidrs()
        nets = [ipaddress.IPv4Network(c) for c in private + public]
        assert len(nets) == 2 * zones
        assert all(n.subnet_of(ipaddress.IPv4Network(cidr)) for n in nets)
        assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])


# ---- property: random bad configs never produce resources ------------------------------------

_SUPPORTED = set(versions.SUPPORTED_KUBERNETES_VERSIONS)


def _not_a_cidr(text: str) -> bool:
    import ipaddress

    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError:
        return True
    return not 16 <= net.prefixlen <= 22


_BAD_VALUES = st.one_of(
    st.tuples(st.just("network.azCount"), st.integers(max_value=1) | st.integers(min_value=7)),
    st.tuples(st.just("network.vpcCidr"), st.text(max_size=20).filter(_not_a_cidr)),
    st.tuples(st.just("network.natGateways"),
              st.text(max_size=10).filter(lambda t: t not in ("single", "perAz"))),
    st.tuples(st.just("cluster.version"), st.text(max_size=6).filter(lambda t: t not in _SUPPORTED)),
    st.tuples(st.just("cluster.adminPrincipalArns[0]"),
              st.text(max_size=30).filter(lambda t: not t.startswith("arn:"))),
    st.tuples(st.just("cluster.logRetentionDays"),
              st.integers().filter(lambda d: d not in LOG_RETENTION_DAYS)),
    st.tuples(st.just("gpuNodeGroups[0].minSize"), st.integers(min_value=9, max_value=10**6)),  # > every maxSize
    st.tuples(st.just("gpuNodeGroups[0].maxSize"), st.integers(max_value=0)),
    st.tuples(st.just("gpuNodeGroups[0].capacityType"),
              st.text(max_size=12).filter(lambda t: t not in ("ON_DEMAND", "SPOT"))),
    st.tuples(st.just("gpuNodeGroups[0].instanceTypes[0]"),
              st.text(max_size=14).filter(lambda t: t not in versions.GPU_INSTANCE_TYPES)),
    st.tuples(st.just("gpuNodeGroups[0].diskSizeGib"), st.integers(max_value=99)),
    st.tuples(st.just("systemNodeGroup.minSize"), st.integers(max_value=0)),
    st.tuples(st.just("modelBucket.encryption"),
              st.text(max_size=8).filter(lambda t: t not in ("kms", "s3"))),
    st.tuples(st.just("modelBucket.noncurrentVersionExpirationDays"),
              st.integers(max_value=0) | st.integers(min_value=3651)),
    st.tuples(st.from_regex(r"[a-z]{1,12}", fullmatch=True).map(lambda k: f"network.{k}Typo"),
              st.integers()),
    st.tuples(st.from_regex(r"[a-z]{1,12}", fullmatch=True).map(lambda k: f"{k}Typo"),
              st.booleans()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.lists(_BAD_VALUES, min_size=1, max_size=4),
       stack=st.sampled_from(["dev", "staging", "prod"]))
def test_random_bad_configs_never_produce_resources(changes, stack):
    config = engine_config(stack)
    for path, value in changes:
        config = set_path(config, path, value)
    graph = evaluate(stack, config=config)
    assert isinstance(graph.error, ConfigError), graph.error
    assert graph.resources == []
    assert graph.invokes == []
