"""policy/rules.py: every rule fails on a bad fixture and passes on a good one, called directly
and through pulumi-policy's own analyzer (the shipped stacks' graphs go through the analyzer in
test_engine_path.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from policy.baseline import WAIVERS_TAG
from policy.rules import RULES
from tests.harness import Graph
from tests.policy.engine import PolicyPack, Resource


@dataclass
class View:
    """What pulumi-policy hands a rule, built from the recorded graph or by hand."""

    resource_type: str
    props: dict[str, Any]
    urn: str = "urn:pulumi:test::mlserve::t::r"
    name: str = "r"
    opts: Any = field(default_factory=lambda: SimpleNamespace(protect=False))
    provider: Any = None
    property_dependencies: dict[str, list[Any]] = field(default_factory=dict)


def views(graph: Graph) -> list[View]:
    by_urn: dict[str, View] = {}
    for res in graph.resources:
        by_urn[res.urn] = View(res.type, res.inputs, res.urn, res.name,
                               SimpleNamespace(protect=res.protect))
    for res in graph.resources:
        view = by_urn[res.urn]
        view.provider = by_urn.get(res.provider) if res.provider else None
        view.property_dependencies = {k: [by_urn[u] for u in urns if u in by_urn]
                                      for k, urns in res.property_dependencies.items()}
    return list(by_urn.values())


def apply(rule, resources: list[View]) -> list[str]:
    """Run one rule the way the pack does: once per stack, or once per matching resource."""
    found: list[str] = []
    report = lambda message, *_: found.append(message)  # noqa: E731
    if rule.kind == "stack":
        rule.func(SimpleNamespace(resources=resources), report)
    else:
        for view in resources:
            if view.resource_type in rule.resource_types:
                rule.func(view, report)
    return found


def violations(resources: list[View]) -> list[str]:
    return [f"{rule.name}: {message}" for rule in RULES for message in apply(rule, resources)]



def to_engine(views_: list[View]) -> list[Resource]:
    """Hand-written fixtures as the engine would hold them (inputs = outputs)."""
    done: dict[int, Resource] = {}

    def convert(view: View) -> Resource:
        if id(view) not in done:
            done[id(view)] = Resource(
                view.resource_type, json.loads(json.dumps(view.props)), urn=view.urn,
                name=view.name, protect=bool(view.opts.protect),
                provider=convert(view.provider) if view.provider is not None else None,
                property_dependencies={k: [v.urn for v in deps]
                                       for k, deps in view.property_dependencies.items()})
        return done[id(view)]

    return [convert(v) for v in views_]


def test_rules_are_documented():
    assert len(RULES) >= 25
    assert len({r.name for r in RULES}) == len(RULES)
    for rule in RULES:
        assert rule.description.endswith((".", ")")), rule.name


def test_the_pack_sees_the_real_graph(prod):
    """Not vacuous: breaking the recorded prod graph makes the stack rules fire."""
    resources = views(prod)
    assert violations(resources) == []
    for view in resources:
        if view.resource_type == "aws:s3/bucket:Bucket":
            view.opts = SimpleNamespace(protect=False)
        if view.resource_type == "aws:s3/bucketVersioning:BucketVersioning":
            view.property_dependencies = {"bucket": []}
    found = violations(resources)
    assert any(v.startswith("prod-bucket-protected:") for v in found)
    assert any(v.startswith("s3-versioning:") for v in found)


# ---- a failing and a passing fixture per rule -----------------------------------------------

ACCOUNT = "777788889999"


def provider(environment: str = "prod", waivers: str = "", accounts: tuple[str, ...] = (ACCOUNT,),
             urn: str = "urn:provider") -> View:
    tags = {"mlserve:environment": environment, **({WAIVERS_TAG: waivers} if waivers else {})}
    return View("pulumi:providers:aws", {"defaultTags": json.dumps({"tags": tags}),
                                         "allowedAccountIds": json.dumps(list(accounts))},
                urn=urn, name="aws")


PROD_PROVIDER = provider()
DEV_PROVIDER = provider("dev", urn="urn:dev-provider")


def tls_policy(*floors: str) -> str:
    statements = [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                   "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]
    statements += [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                    "Condition": {"NumericLessThan": {"s3:TlsVersion": floor}}} for floor in floors]
    return json.dumps({"Statement": statements})


def bucket_stack(**overrides: Any) -> list[View]:
    bucket = View("aws:s3/bucket:Bucket", {"forceDestroy": False}, urn="urn:bucket",
                  name="models", opts=SimpleNamespace(protect=True))
    deps = {"bucket": [bucket]}
    configs = {
        "encryption": View("aws:s3/bucketServerSideEncryptionConfiguration:"
                           "BucketServerSideEncryptionConfiguration",
                           {"rules": [{"applyServerSideEncryptionByDefault":
                                       {"sseAlgorithm": "aws:kms"}}]},
                           property_dependencies=deps),
        "block": View("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                      {f: True for f in ("blockPublicAcls", "blockPublicPolicy",
                                         "ignorePublicAcls", "restrictPublicBuckets")},
                      property_dependencies=deps),
        "versioning": View("aws:s3/bucketVersioning:BucketVersioning",
                           {"versioningConfiguration": {"status": "Enabled"}},
                           property_dependencies=deps),
        "policy": View("aws:s3/bucketPolicy:BucketPolicy", {"policy": tls_policy("1.2")},
                       property_dependencies=deps),
        "ownership": View("aws:s3/bucketOwnershipControls:BucketOwnershipControls",
                          {"rule": {"objectOwnership": "BucketOwnerEnforced"}},
                          property_dependencies=deps),
    }
    for key, value in overrides.items():
        if value is None:
            configs.pop(key)
        elif isinstance(value, str):  # a bucket policy document
            configs[key] = View("aws:s3/bucketPolicy:BucketPolicy", {"policy": value},
                                property_dependencies=deps)
        else:
            configs[key] = value
    return [PROD_PROVIDER, bucket, *configs.values()]


GOOD_ISVC = {"metadata": {"name": "m", "namespace": "models"}, "spec": {"predictor": {
    "minReplicas": 2, "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
    "nodeSelector": {"mlserve.io/pool": "a10g"},
    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"}},
    "model": {"storageUri": "s3://b/models/0123456789abcdef0123",
              "resources": {"requests": {"cpu": "1", "memory": "1Gi"},
                            "limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}}}}}}
ISVC_TYPE = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
SELDON_TYPE = "kubernetes:machinelearning.seldon.io/v1:SeldonDeployment"


def isvc(labels: dict[str, str] | None = None, **predictor: Any) -> View:
    body = json.loads(json.dumps(GOOD_ISVC))
    body["spec"]["predictor"].update(predictor)
    if labels:
        body["metadata"]["labels"] = labels
    return View(ISVC_TYPE, body, provider=PROD_PROVIDER, name="m")


def interceptor_route(namespace: str = "models", **spec: Any) -> View:
    body = {"metadata": {"name": "m-predictor", "namespace": namespace}, "spec": {
        "target": {"service": "m-predictor", "port": 80},
        "rules": [{"hosts": ["m-predictor.models.svc.cluster.local"]}],
        "timeouts": {"readiness": "240s"},
        "coldStart": {"fallback": {"service": {"name": "cold-start-fallback", "port": 8080}}},
        "scalingMetric": {"concurrency": {"targetValue": 4}}, **spec}}
    return View("kubernetes:http.keda.sh/v1beta1:InterceptorRoute", body, name="m-route")


def model(**changes: Any) -> View:
    body = json.loads(json.dumps(GOOD_ISVC))
    body["spec"]["predictor"]["model"].update(changes)
    return View(ISVC_TYPE, body)


def canary(**changes: Any) -> View:
    body = json.loads(json.dumps(GOOD_ISVC))
    body["spec"]["canary"] = [{"predictor": {**body["spec"]["predictor"], **changes}}]
    return View(ISVC_TYPE, body)


def seldon(replicas: int = 2, **pod: Any) -> View:
    spec = {"nodeSelector": {"mlserve.io/pool": "a10g"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                             "effect": "NoSchedule"}],
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "m", "resources": GOOD_ISVC["spec"]["predictor"]["model"][
                "resources"]}]}
    spec.update(pod)
    return View(SELDON_TYPE, {"metadata": {"name": "m", "namespace": "models"}, "spec": {
        "predictors": [{"name": "default",
                        "graph": {"name": "m", "modelUri": "s3://b/models/0123456789abcdef0123"},
                        "componentSpecs": [{"spec": spec,
                                            "kedaSpec": {"minReplicaCount": replicas}}]}]}},
        name="m")


EKS_GOOD = {"version": "1.35", "accessConfig": {"authenticationMode": "API"},
            "encryptionConfig": {"resources": ["secrets"]}, "deletionProtection": True,
            "enabledClusterLogTypes": ["api", "audit", "authenticator"],
            "vpcConfig": {"endpointPrivateAccess": True, "endpointPublicAccess": True,
                          "publicAccessCidrs": ["198.51.100.0/24"]}}


def eks(provider_: View = PROD_PROVIDER, **changes: Any) -> View:
    return View("aws:eks/cluster:Cluster", {**EKS_GOOD, **changes}, provider=provider_)


def endpoint(*cidrs: str, public: bool = True) -> dict[str, Any]:
    return {"vpcConfig": {"endpointPrivateAccess": True, "endpointPublicAccess": public,
                          "publicAccessCidrs": list(cidrs)}}


LT_GOOD = {"metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1},
           "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true"}}]}
TRUST = {"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
         "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/x"},
         "Condition": {"StringEquals": {"x:sub": "system:serviceaccount:models:model-server",
                                        "x:aud": "sts.amazonaws.com"}}}


def role(statement: dict[str, Any]) -> View:
    return View("aws:iam/role:Role", {"assumeRolePolicy": json.dumps({"Statement": [statement]})})


PDB = View("kubernetes:policy/v1:PodDisruptionBudget", {
    "metadata": {"name": "m", "namespace": "models"},
    "spec": {"minAvailable": 1, "selector": {"matchLabels": {
        "serving.kserve.io/inferenceservice": "m"}}}})
SELDON_PDB = View("kubernetes:policy/v1:PodDisruptionBudget", {
    "metadata": {"name": "m", "namespace": "models"},
    "spec": {"minAvailable": 1, "selector": {"matchLabels": {"seldon-deployment-id": "m"}}}})


def log_group(name: str, days: int, urn: str = "") -> View:
    return View("aws:cloudwatch/logGroup:LogGroup", {"name": name, "retentionInDays": days},
                urn=urn or f"urn:lg:{name}")


def vpc_stack(flow_log_days: int | None = 90) -> list[View]:
    vpc = View("aws:ec2/vpc:Vpc", {"cidrBlock": "10.0.0.0/16"}, urn="urn:vpc", name="vpc")
    stack = [PROD_PROVIDER, vpc]
    if flow_log_days is not None:
        group = log_group("/mlserve/x/vpc-flow-log", flow_log_days)
        stack += [group, View("aws:ec2/flowLog:FlowLog", {"trafficType": "REJECT"},
                              property_dependencies={"vpcId": [vpc], "logDestination": [group]})]
    return stack


def nat_stack(nat_zones: tuple[str, ...], provider_: View = PROD_PROVIDER) -> list[View]:
    private = [View("aws:ec2/subnet:Subnet", {
        "availabilityZone": f"us-west-2{z}", "tags": {"kubernetes.io/role/internal-elb": "1"}},
        urn=f"urn:private-{z}") for z in "abc"]
    public = {z: View("aws:ec2/subnet:Subnet", {
        "availabilityZone": f"us-west-2{z}", "tags": {"kubernetes.io/role/elb": "1"}},
        urn=f"urn:public-{z}") for z in "abc"}
    nats = [View("aws:ec2/natGateway:NatGateway", {}, urn=f"urn:nat-{z}",
                 property_dependencies={"subnetId": [public[z]]}) for z in nat_zones]
    return [provider_, *private, *public.values(), *nats]


def access_entry(arn: str) -> View:
    return View("aws:eks/accessEntry:AccessEntry", {"principalArn": arn, "type": "STANDARD"},
                urn=f"urn:entry:{arn}")


def release(chart: str, values: dict[str, Any]) -> View:
    return View("kubernetes:helm.sh/v3:Release", {"chart": chart, "version": "1.0.0",
                                                  "values": values}, name=f"release-{chart}")


HA_CERT_MANAGER = {"replicaCount": 2, "webhook": {"replicaCount": 2},
                   "cainjector": {"replicaCount": 2}}


def kps(route_receiver: str = "mlserve", receivers: list[dict[str, Any]] | None = None,
        **alertmanager: Any) -> View:
    receivers = receivers if receivers is not None else [
        {"name": "null"}, {"name": "mlserve", "sns_configs": [{"topic_arn": "arn"}]}]
    return release("kube-prometheus-stack", {
        "prometheus": {"prometheusSpec": {"replicas": 2}},
        "alertmanager": {"alertmanagerSpec": {"replicas": 2},
                         "config": {"route": {"receiver": route_receiver},
                                    "receivers": receivers}, **alertmanager}})


def spot_pool(capacity: str, provider_: View = PROD_PROVIDER) -> list[View]:
    group = View("aws:eks/nodeGroup:NodeGroup", {"capacityType": capacity,
                                                 "labels": {"mlserve.io/pool": "a10g"}},
                 name="a10g")
    return [provider_, group, isvc(), PDB]


NODE_CLASS_GOOD = {"metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required",
                                       "httpPutResponseHopLimit": 1},
                   "blockDeviceMappings": [{"deviceName": "/dev/xvda",
                                            "ebs": {"encrypted": True, "volumeType": "gp3"}}]}


def node_class(**spec: Any) -> View:
    return View("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass",
                {"metadata": {"name": "a10g"}, "spec": {**NODE_CLASS_GOOD, **spec}},
                name="a10g")


def node_pool(gpu: bool = True, **spec: Any) -> View:
    taints = spec.pop("taints", [{"key": "nvidia.com/gpu", "value": "true",
                                  "effect": "NoSchedule"}])
    labels = {"nvidia.com/gpu.present": "true"} if gpu else {"mlserve.io/pool": "cpu"}
    body = {"limits": {"nvidia.com/gpu": "4"} if gpu else {"cpu": "64"},
            "template": {"metadata": {"labels": labels},
                         "spec": {"taints": taints, "requirements": []}}, **spec}
    if not gpu and "limits" not in spec:
        body["limits"] = {"cpu": "64"}
    return View("kubernetes:karpenter.sh/v1:NodePool",
                {"metadata": {"name": "a10g-spot"}, "spec": body}, name="a10g-spot")


def karpenter_pool(capacity_types: list[str] | None, provider_: View = PROD_PROVIDER) -> list[View]:
    requirements = [] if capacity_types is None else [
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": capacity_types}]
    pool = View("kubernetes:karpenter.sh/v1:NodePool", {"metadata": {"name": "a10g"}, "spec": {
        "limits": {"nvidia.com/gpu": "4"},
        "template": {"metadata": {"labels": {"mlserve.io/pool": "a10g"}},
                     "spec": {"requirements": requirements}}}}, name="a10g")
    return [provider_, pool, isvc(), PDB]


FIXTURES: dict[str, tuple[list[View], list[View]]] = {
    # rule: (violating resources, compliant resources)
    "s3-bucket-encrypted": (bucket_stack(encryption=None), bucket_stack()),
    "s3-public-access-blocked": (bucket_stack(block=View(
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        {"blockPublicAcls": True, "blockPublicPolicy": False, "ignorePublicAcls": True,
         "restrictPublicBuckets": True}, property_dependencies={"bucket": []})), bucket_stack()),
    "s3-versioning": (bucket_stack(versioning=None), bucket_stack()),
    "s3-tls-only": (bucket_stack(policy=None), bucket_stack()),
    "s3-tls-floor": (bucket_stack(policy=tls_policy("1.0")), bucket_stack(policy=tls_policy("1.3"))),
    "s3-no-public-acl": ([View("aws:s3/bucket:Bucket", {"acl": "public-read"})],
                         [View("aws:s3/bucket:Bucket", {"acl": "private"})]),
    "s3-acls-disabled": (bucket_stack(ownership=None), bucket_stack()),
    "prod-bucket-protected": ([PROD_PROVIDER, View("aws:s3/bucket:Bucket", {}, urn="urn:b")],
                              bucket_stack()),
    "kms-key-rotation": ([View("aws:kms/key:Key", {"enableKeyRotation": False})],
                         [View("aws:kms/key:Key", {"enableKeyRotation": True})]),
    "eks-secrets-encrypted": ([eks(encryptionConfig={})], [eks()]),
    "eks-api-authentication": ([eks(accessConfig={"authenticationMode": "API_AND_CONFIG_MAP"})],
                               [eks()]),
    "eks-audit-logging": ([eks(enabledClusterLogTypes=["api"])], [eks()]),
    "eks-endpoint-restricted": ([eks(**endpoint("0.0.0.0/1", "128.0.0.0/1"))], [eks()]),
    "eks-supported-version": ([eks(version="1.29")], [eks()]),
    "prod-eks-deletion-protection": ([eks(deletionProtection=False)],
                                     [eks(), eks(DEV_PROVIDER, deletionProtection=False)]),
    "prod-audit-log-retention": ([PROD_PROVIDER, log_group("/aws/eks/c/cluster", 1)],
                                 [PROD_PROVIDER, log_group("/aws/eks/c/cluster", 365)]),
    "prod-vpc-flow-logs": (vpc_stack(None), vpc_stack(90)),
    "prod-nat-per-az": (nat_stack(("a",)), nat_stack(("a", "b", "c"))),
    "admins-own-account": ([PROD_PROVIDER, access_entry("arn:aws:iam::999999999999:role/x")],
                           [PROD_PROVIDER, access_entry(f"arn:aws:iam::{ACCOUNT}:role/x")]),
    "node-imdsv2": ([View("aws:ec2/launchTemplate:LaunchTemplate", {**LT_GOOD, "metadataOptions":
                          {"httpTokens": "optional", "httpPutResponseHopLimit": 2}})],
                    [View("aws:ec2/launchTemplate:LaunchTemplate", LT_GOOD)]),
    "node-volumes-encrypted": ([View("aws:ec2/launchTemplate:LaunchTemplate", {
        **LT_GOOD, "blockDeviceMappings": [{"deviceName": "/dev/xvda",
                                            "ebs": {"encrypted": "false"}}]})],
        [View("aws:ec2/launchTemplate:LaunchTemplate", LT_GOOD)]),
    "gpu-nodes-tainted": ([View("aws:eks/nodeGroup:NodeGroup", {"amiType": "AL2023_x86_64_NVIDIA",
                                                                 "taints": []})],
                          [View("aws:eks/nodeGroup:NodeGroup", {
                              "amiType": "AL2023_x86_64_NVIDIA",
                              "taints": [{"key": "nvidia.com/gpu", "value": "true",
                                          "effect": "NO_SCHEDULE"}]})]),
    "no-ssh-to-nodes": ([View("aws:eks/nodeGroup:NodeGroup", {"remoteAccess": {"ec2SshKey": "k"}})],
                        [View("aws:eks/nodeGroup:NodeGroup", {})]),
    "karpenter-node-class-imdsv2": (
        [node_class(metadataOptions={"httpTokens": "optional", "httpPutResponseHopLimit": 2})],
        [node_class()]),
    "karpenter-node-class-volumes-encrypted": (
        [node_class(blockDeviceMappings=[{"deviceName": "/dev/xvda",
                                          "ebs": {"encrypted": False}}]),
         node_class(blockDeviceMappings=[])],
        [node_class()]),
    "karpenter-gpu-pools-tainted": ([node_pool(taints=[])],
                                    [node_pool(), node_pool(gpu=False, taints=[])]),
    "karpenter-pools-limited": ([node_pool(limits={}), node_pool(limits={"cpu": "64"})],
                                [node_pool(), node_pool(gpu=False, limits={"cpu": "64"})]),
    "iam-no-admin-wildcards": ([View("aws:iam/rolePolicy:RolePolicy", {"policy": json.dumps(
        {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})})],
        [View("aws:iam/rolePolicy:RolePolicy", {"policy": json.dumps(
            {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                            "Resource": "arn:aws:s3:::b/*"}]})})]),
    "irsa-trust-scoped": ([role({**TRUST, "Condition": {"StringLike": {
        "x:sub": "system:serviceaccount:models:*"}}})], [role(TRUST)]),
    "no-iam-users": ([View("aws:iam/user:User", {})], []),
    "no-access-keys": ([View("aws:iam/accessKey:AccessKey", {})], []),
    "helm-release-pinned": ([View("kubernetes:helm.sh/v3:Release", {"version": "^1.2"})],
                            [View("kubernetes:helm.sh/v3:Release", {"version": "v1.21.1"})]),
    "prod-high-availability": ([PROD_PROVIDER, release("cert-manager", {"replicaCount": 1})],
                               [PROD_PROVIDER, release("cert-manager", HA_CERT_MANAGER)]),
    "prod-alert-receiver": ([PROD_PROVIDER, kps("null")], [PROD_PROVIDER, kps()]),
    "model-resources-set": ([model(resources={"limits": {"nvidia.com/gpu": "1"}})], [model()]),
    "model-gpu-toleration": ([isvc(tolerations=[])], [isvc()]),
    "model-non-root": ([isvc(securityContext={})], [isvc()]),
    "model-storage-content-addressed": ([model(storageUri="s3://b/models/latest")], [model()]),
    "no-aws-keys-in-secrets": (
        [View("kubernetes:core/v1:Secret", {"stringData": {"AWS_SECRET_ACCESS_KEY": "x"}}),
         View("kubernetes:core/v1:Secret", {
             "metadata": {"annotations": {"serving.kserve.io/s3-endpoint":
                                          "s3.us-west-2.amazonaws.com"}},
             "stringData": {"AWS_ACCESS_KEY_ID": "x"}})],
        [View("kubernetes:core/v1:Secret", {"stringData": {"RCLONE_CONFIG_S3_ENV_AUTH": "true"}}),
         View("kubernetes:core/v1:Secret", {
             "metadata": {"annotations": {"serving.kserve.io/s3-endpoint": "minio:9000"}},
             "stringData": {"AWS_ACCESS_KEY_ID": "minio-user"}})]),
    "prod-model-availability": ([PROD_PROVIDER, isvc(minReplicas=1), PDB],
                                [PROD_PROVIDER, isvc(), PDB]),
    "prod-model-capacity-on-demand": (spot_pool("SPOT"), spot_pool("ON_DEMAND")),
    "zero-replica-models-held": ([isvc(minReplicas=0)],
                                 [isvc(minReplicas=0), interceptor_route()]),
}

# More cases per rule: (rule, resources, expected to fire).
CASES: list[tuple[str, str, list[View], bool]] = [
    ("held: a model with a floor needs no route", "zero-replica-models-held", [isvc()], False),
    ("held: no budget", "zero-replica-models-held",
     [isvc(minReplicas=0), interceptor_route(timeouts={})], True),
    ("held: no fallback", "zero-replica-models-held",
     [isvc(minReplicas=0), interceptor_route(coldStart={})], True),
    ("held: a route in another namespace", "zero-replica-models-held",
     [isvc(minReplicas=0), interceptor_route(namespace="other")], True),
    ("held: a route to another Service", "zero-replica-models-held",
     [isvc(minReplicas=0), interceptor_route(target={"service": "x-predictor", "port": 80})],
     True),
    ("held: Seldon at zero without a route", "zero-replica-models-held", [seldon(0)], True),
    ("held: Seldon at zero, its predictor's route", "zero-replica-models-held",
     [seldon(0), interceptor_route(target={"service": "m-default", "port": 9000})], False),
    ("held: Seldon at zero, KServe's Service name", "zero-replica-models-held",
     [seldon(0), interceptor_route()], True),
    ("held: Seldon with a floor", "zero-replica-models-held", [seldon(1)], False),
    ("public endpoint: 0.0.0.0/0 in prod", "eks-endpoint-restricted",
     [eks(**endpoint("0.0.0.0/0"))], True),
    ("public endpoint: no CIDRs means 0.0.0.0/0", "eks-endpoint-restricted",
     [eks(**endpoint())], True),
    ("public endpoint: more than a /16 in prod", "eks-endpoint-restricted",
     [eks(**endpoint("198.51.0.0/16", "203.0.113.0/24"))], True),
    ("public endpoint: exactly a /16 in prod", "eks-endpoint-restricted",
     [eks(**endpoint("198.51.0.0/16"))], False),
    ("public endpoint: private CIDR anywhere", "eks-endpoint-restricted",
     [eks(DEV_PROVIDER, **endpoint("10.0.0.0/8"))], True),
    ("public endpoint: 0.0.0.0/0 in dev", "eks-endpoint-restricted",
     [eks(DEV_PROVIDER, **endpoint("0.0.0.0/0"))], False),
    ("public endpoint: off", "eks-endpoint-restricted",
     [eks(**endpoint("0.0.0.0/0", public=False))], False),
    ("public endpoint: no provider fails closed to prod", "eks-endpoint-restricted",
     [eks(None, **endpoint("0.0.0.0/0"))], True),
    ("TLS floor missing", "s3-tls-floor", bucket_stack(policy=tls_policy()), True),
    ("TLS floor 1.1", "s3-tls-floor", bucket_stack(policy=tls_policy("1.1")), True),
    ("TLS floor 1.2", "s3-tls-floor", bucket_stack(policy=tls_policy("1.2")), False),
    ("audit logs that never expire", "prod-audit-log-retention",
     [PROD_PROVIDER, log_group("/aws/eks/c/cluster", 0)], False),
    ("audit logs in dev", "prod-audit-log-retention",
     [DEV_PROVIDER, log_group("/aws/eks/c/cluster", 1)], False),
    ("flow log kept a day", "prod-vpc-flow-logs", vpc_stack(1), True),
    ("single NAT waived", "prod-nat-per-az",
     nat_stack(("a",), provider("prod", "singleNatGateway")), False),
    ("single NAT in dev", "prod-nat-per-az", nat_stack(("a",), DEV_PROVIDER), False),
    ("no account pinned in prod", "admins-own-account", [provider(accounts=())], True),
    ("no AWS provider at all (an existing cluster)", "admins-own-account", [], False),
    ("foreign admin in dev", "admins-own-account",
     [provider("dev"), access_entry("arn:aws:iam::999999999999:role/x")], True),
    ("no account pinned in dev", "admins-own-account",
     [provider("dev", accounts=()), access_entry("arn:aws:iam::999999999999:role/x")], False),
    ("HA: prometheus on one replica", "prod-high-availability",
     [PROD_PROVIDER, kps(prometheus={"prometheusSpec": {"replicas": 1}})], False),
    ("HA: alertmanager on one replica", "prod-high-availability",
     [PROD_PROVIDER, kps(alertmanagerSpec={"replicas": 1})], True),
    ("HA: one system node", "prod-high-availability",
     [PROD_PROVIDER, View("aws:eks/nodeGroup:NodeGroup", {
         "labels": {"mlserve.io/pool": "system"}, "scalingConfig": {"minSize": 1}})], True),
    ("HA: two system nodes", "prod-high-availability",
     [PROD_PROVIDER, View("aws:eks/nodeGroup:NodeGroup", {
         "labels": {"mlserve.io/pool": "system"}, "scalingConfig": {"minSize": 2}})], False),
    ("HA off in dev", "prod-high-availability",
     [DEV_PROVIDER, release("cert-manager", {"replicaCount": 1})], False),
    ("alerts: no monitoring at all in prod", "prod-alert-receiver", [PROD_PROVIDER], True),
    ("alerts: Alertmanager off", "prod-alert-receiver", [PROD_PROVIDER, kps(enabled=False)], True),
    ("alerts: a receiver with no integration", "prod-alert-receiver",
     [PROD_PROVIDER, kps("mlserve", [{"name": "mlserve"}])], True),
    ("alerts: none in dev", "prod-alert-receiver", [DEV_PROVIDER], False),
    ("replicas: the floor is 2", "prod-model-availability", [PROD_PROVIDER, isvc(), PDB], False),
    ("replicas: no budget", "prod-model-availability", [PROD_PROVIDER, isvc()], True),
    ("replicas: a budget for another model", "prod-model-availability",
     [PROD_PROVIDER, isvc(), View("kubernetes:policy/v1:PodDisruptionBudget", {
         "metadata": {"name": "x", "namespace": "models"}, "spec": {"minAvailable": 1,
         "selector": {"matchLabels": {"serving.kserve.io/inferenceservice": "other"}}}})], True),
    ("replicas: a canary-track object may run one", "prod-model-availability",
     [PROD_PROVIDER, isvc({"mlserve.io/track": "canary"}, minReplicas=1)], False),
    ("replicas: an in-spec canary may run one", "prod-model-availability",
     [PROD_PROVIDER, canary(minReplicas=1), PDB], False),
    ("replicas: unlabelled objects count as stable", "prod-model-availability",
     [PROD_PROVIDER, isvc({"mlserve.io/model": "m"}, minReplicas=1), PDB], True),
    ("replicas: in dev", "prod-model-availability", [DEV_PROVIDER, isvc(minReplicas=1)], False),
    ("replicas: Seldon under the floor", "prod-model-availability",
     [PROD_PROVIDER, seldon(1), SELDON_PDB], True),
    ("replicas: Seldon at the floor", "prod-model-availability",
     [PROD_PROVIDER, seldon(2), SELDON_PDB], False),
    ("Seldon: root pods", "model-non-root", [seldon(securityContext={})], True),
    ("non-root claimed, no uid (the Triton image's USER is root)", "model-non-root",
     [isvc(securityContext={"runAsNonRoot": True,
                            "seccompProfile": {"type": "RuntimeDefault"}})], True),
    ("non-root claimed, uid 0", "model-non-root",
     [isvc(securityContext={"runAsNonRoot": True, "runAsUser": 0,
                            "seccompProfile": {"type": "RuntimeDefault"}})], True),
    ("Seldon: no toleration", "model-gpu-toleration", [seldon(tolerations=[])], True),
    ("Seldon: no resources", "model-resources-set",
     [seldon(containers=[{"name": "m"}])], True),
    ("Seldon: a mutable model URI", "model-storage-content-addressed",
     [View(SELDON_TYPE, {"spec": {"predictors": [{"graph": {"modelUri": "s3://b/latest"},
                                                  "componentSpecs": []}]}})], True),
    ("Seldon: all good", "model-non-root", [seldon()], False),
    ("canary: root pods", "model-non-root", [canary(securityContext={})], True),
    ("canary: mutable URI", "model-storage-content-addressed",
     [canary(model={**GOOD_ISVC["spec"]["predictor"]["model"], "storageUri": "s3://b/x"})],
     True),
    ("SPOT waived", "prod-model-capacity-on-demand",
     spot_pool("SPOT", provider("prod", "spotModelCapacity")), False),
    ("SPOT in dev", "prod-model-capacity-on-demand", spot_pool("SPOT", DEV_PROVIDER), False),
    ("SPOT pool that serves no model", "prod-model-capacity-on-demand",
     [PROD_PROVIDER, View("aws:eks/nodeGroup:NodeGroup", {
         "capacityType": "SPOT", "labels": {"mlserve.io/pool": "batch"}})], False),
    ("Karpenter: spot NodePool of a model pool", "prod-model-capacity-on-demand",
     karpenter_pool(["spot"]), True),
    ("Karpenter: no capacity-type requirement (Karpenter may pick spot)",
     "prod-model-capacity-on-demand", karpenter_pool(None), True),
    ("Karpenter: on-demand NodePool", "prod-model-capacity-on-demand",
     karpenter_pool(["on-demand"]), False),
    ("Karpenter: spot waived", "prod-model-capacity-on-demand",
     karpenter_pool(["spot"], provider("prod", "spotModelCapacity")), False),
]


def run_rule(name: str, resources: list[View]) -> list[str]:
    (rule,) = [r for r in RULES if r.name == name]
    return apply(rule, resources)


def test_every_rule_has_fixtures():
    assert set(FIXTURES) == {r.name for r in RULES}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_rule_fails_on_its_bad_fixture_and_passes_on_its_good_one(name):
    bad, good = FIXTURES[name]
    assert run_rule(name, bad), f"{name} did not fire"
    assert run_rule(name, good) == [], name


@pytest.mark.parametrize(("case", "name", "resources", "fires"), CASES,
                         ids=[c[0] for c in CASES])
def test_rule_cases(case, name, resources, fires):
    assert bool(run_rule(name, resources)) is fires, (case, run_rule(name, resources))


@pytest.fixture(scope="module")
def pack():
    with PolicyPack() as running:
        yield running


def _engine_fires(pack: PolicyPack, name: str, resources: list[View]) -> list[str]:
    return [d.message for d in pack.check(to_engine(resources)) if d.policy == name]


def test_every_fixture_and_case_gives_the_same_answer_through_the_engine_path(pack):
    """The same fixtures, through pulumi-policy's analyzer and proxies: same verdicts."""
    disagreements = []
    for name, (bad, good) in sorted(FIXTURES.items()):
        if not _engine_fires(pack, name, bad):
            disagreements.append(f"{name}: bad fixture passes")
        if found := _engine_fires(pack, name, good):
            disagreements.append(f"{name}: good fixture fails: {found}")
    for case, name, resources, fires in CASES:
        if bool(_engine_fires(pack, name, resources)) is not fires:
            disagreements.append(f"{name}: {case}")
    assert disagreements == []


def test_rules_tolerate_values_unknown_during_preview():
    unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's unknown marker
    resources = [PROD_PROVIDER,
                 View(ISVC_TYPE, {"metadata": {"name": "m"}, "spec": unknown},
                      provider=PROD_PROVIDER),
                 View("aws:iam/role:Role", {"assumeRolePolicy": unknown}), PDB]
    for rule in RULES:
        run_rule(rule.name, resources)  # no exception


def test_environment_fails_closed(monkeypatch):
    from policy.rules import environment

    namespace = View("kubernetes:core/v1:Namespace", {"metadata": {
        "name": "models", "labels": {"mlserve.io/environment": "dev"}}})
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    assert environment([namespace]) == "dev"
    assert environment([DEV_PROVIDER, namespace]) == "dev"
    assert environment([]) == "prod", "nothing said: prod"
    assert environment([provider("qa")]) == "prod", "unknown: prod"
    assert environment([DEV_PROVIDER, provider("staging")]) == "prod", "contradictory: prod"
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"mlserve:environment": "staging"}))
    assert environment([]) == "staging", "the stack's config counts"
    assert environment([namespace]) == "prod", "config and labels disagree: prod"


def test_the_packs_copies_of_stack_constants_match_the_stack():
    """The pack runs in its own environment, so it keeps copies; they must not drift."""
    from components.gpu_node_groups import GPU_TAINT
    from components.k8s import POOL_LABEL
    from components.kserve import ISVC_LABEL
    from components.seldon import POD_LABEL as SELDON_LABEL
    from components.versions import SUPPORTED_KUBERNETES_VERSIONS
    from policy import rules

    assert rules.SUPPORTED_KUBERNETES_VERSIONS == SUPPORTED_KUBERNETES_VERSIONS
    assert {"key": GPU_TAINT.key, "effect": GPU_TAINT.effect} == rules.GPU_TAINT
    assert (rules.ISVC_POD_LABEL, rules.SELDON_POD_LABEL) == (ISVC_LABEL, SELDON_LABEL)
    assert rules.POOL_LABEL == POOL_LABEL


@pytest.mark.parametrize("model", ["m", "a" * 55])
def test_the_packs_seldon_service_names_are_the_stacks(model):
    """Its copy of the operator's predictor Service name, hashed past 63 characters too."""
    from components.naming import seldon_predictor_service
    from policy import rules

    assert rules._seldon_predictor_service(model, "default") == seldon_predictor_service(model)
