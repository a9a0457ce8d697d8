"""policy/rules.py: every rule fails on a bad fixture and passes on a good one, and every shipped
stack, evaluated under the mocks, passes the whole pack."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from policy.rules import RULES
from tests.harness import STACKS, Graph, evaluate, set_path, stack_config


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


def test_at_least_25_rules_each_documented():
    assert len(RULES) >= 25
    assert len({r.name for r in RULES}) == len(RULES)
    for rule in RULES:
        assert rule.description.endswith((".", ")")), rule.name


@pytest.mark.parametrize("stack", STACKS)
def test_every_shipped_stack_passes_the_whole_pack(stack, request):
    assert violations(views(request.getfixturevalue(stack))) == []


def test_the_local_stack_passes_too():
    graph = evaluate("local")
    assert graph.error is None
    assert violations(views(graph)) == []


def test_the_seldon_variant_passes_too():
    graph = evaluate("dev", config=set_path(stack_config("dev"), "modelServing.backend", "seldon"))
    assert violations(views(graph)) == []


# ---- a failing and a passing fixture per rule -----------------------------------------------

PROD_PROVIDER = View("pulumi:providers:aws", {"defaultTags": json.dumps(
    {"tags": {"mlserve:environment": "prod"}})}, urn="urn:provider")


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
        "policy": View("aws:s3/bucketPolicy:BucketPolicy", {"policy": json.dumps({"Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]})},
            property_dependencies=deps),
        "ownership": View("aws:s3/bucketOwnershipControls:BucketOwnershipControls",
                          {"rule": {"objectOwnership": "BucketOwnerEnforced"}},
                          property_dependencies=deps),
    }
    for key, value in overrides.items():
        if value is None:
            configs.pop(key)
        else:
            configs[key] = value
    return [PROD_PROVIDER, bucket, *configs.values()]


GOOD_ISVC = {"metadata": {"name": "m"}, "spec": {"predictor": {
    "minReplicas": 2, "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "model": {"storageUri": "s3://b/models/0123456789abcdef0123",
              "resources": {"requests": {"cpu": "1", "memory": "1Gi"},
                            "limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}}}}}}


def isvc(**predictor: Any) -> View:
    body = json.loads(json.dumps(GOOD_ISVC))
    body["spec"]["predictor"].update(predictor)
    return View("kubernetes:serving.kserve.io/v1beta1:InferenceService", body, provider=PROD_PROVIDER)


def model(**changes: Any) -> View:
    body = json.loads(json.dumps(GOOD_ISVC))
    body["spec"]["predictor"]["model"].update(changes)
    return View("kubernetes:serving.kserve.io/v1beta1:InferenceService", body)


EKS_GOOD = {"version": "1.35", "accessConfig": {"authenticationMode": "API"},
            "encryptionConfig": {"resources": ["secrets"]},
            "enabledClusterLogTypes": ["api", "audit", "authenticator"],
            "vpcConfig": {"endpointPrivateAccess": True, "endpointPublicAccess": True,
                          "publicAccessCidrs": ["198.51.100.0/24"]}}


def eks(**changes: Any) -> View:
    return View("aws:eks/cluster:Cluster", {**EKS_GOOD, **changes}, provider=PROD_PROVIDER)


LT_GOOD = {"metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1},
           "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true"}}]}
TRUST = {"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
         "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/x"},
         "Condition": {"StringEquals": {"x:sub": "system:serviceaccount:models:model-server",
                                        "x:aud": "sts.amazonaws.com"}}}


def role(statement: dict[str, Any]) -> View:
    return View("aws:iam/role:Role", {"assumeRolePolicy": json.dumps({"Statement": [statement]})})


PDB = View("kubernetes:policy/v1:PodDisruptionBudget", {"metadata": {"name": "m"}})

FIXTURES: dict[str, tuple[list[View], list[View]]] = {
    # rule: (violating resources, compliant resources)
    "s3-bucket-encrypted": (bucket_stack(encryption=None), bucket_stack()),
    "s3-public-access-blocked": (bucket_stack(block=View(
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        {"blockPublicAcls": True, "blockPublicPolicy": False, "ignorePublicAcls": True,
         "restrictPublicBuckets": True}, property_dependencies={"bucket": []})), bucket_stack()),
    "s3-versioning": (bucket_stack(versioning=None), bucket_stack()),
    "s3-tls-only": (bucket_stack(policy=None), bucket_stack()),
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
    "eks-endpoint-restricted": ([eks(vpcConfig={"endpointPrivateAccess": True,
                                                "endpointPublicAccess": True,
                                                "publicAccessCidrs": ["0.0.0.0/0"]})], [eks()]),
    "eks-supported-version": ([eks(version="1.29")], [eks()]),
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
    "prod-model-availability": ([PROD_PROVIDER, isvc(minReplicas=1)], [PROD_PROVIDER, isvc(), PDB]),
}


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


def test_the_pack_sees_the_real_graph(prod):
    """Not vacuous: breaking the recorded prod graph makes the stack rules fire."""
    resources = views(prod)
    for view in resources:
        if view.resource_type == "aws:s3/bucket:Bucket":
            view.opts = SimpleNamespace(protect=False)
        if view.resource_type == "aws:s3/bucketVersioning:BucketVersioning":
            view.property_dependencies = {"bucket": []}
    found = violations(resources)
    assert any(v.startswith("prod-bucket-protected:") for v in found)
    assert any(v.startswith("s3-versioning:") for v in found)


def test_rules_tolerate_values_unknown_during_preview():
    unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's unknown marker
    resources = [PROD_PROVIDER,
                 View("kubernetes:serving.kserve.io/v1beta1:InferenceService",
                      {"metadata": {"name": "m"}, "spec": unknown}, provider=PROD_PROVIDER),
                 View("aws:iam/role:Role", {"assumeRolePolicy": unknown}), PDB]
    for rule in RULES:
        run_rule(rule.name, resources)  # no exception


def test_environment_of_a_stack_on_an_existing_cluster():
    from policy.rules import environment

    namespace = View("kubernetes:core/v1:Namespace", {"metadata": {
        "name": "models", "labels": {"mlserve.io/environment": "prod"}}})
    assert environment([namespace]) == "prod"
    assert run_rule("prod-model-availability", [namespace, isvc(minReplicas=1)])


def test_the_packs_copies_of_stack_constants_match_the_stack():
    """The pack runs in its own environment, so it keeps copies; they must not drift."""
    from components.gpu_node_groups import GPU_TAINT
    from components.versions import SUPPORTED_KUBERNETES_VERSIONS
    from policy import rules

    assert rules.SUPPORTED_KUBERNETES_VERSIONS == SUPPORTED_KUBERNETES_VERSIONS
    assert rules.GPU_TAINT == {"key": GPU_TAINT.key, "effect": GPU_TAINT.effect}
