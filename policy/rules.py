"""The mlserve policy rules, importable without pulumi-policy so tests call them directly.

Each rule is a plain function with a docstring saying why it exists (its first line is the
rule's description in the pack and in the README). Resource rules receive an object with
`resource_type`, `props`, `urn`, `name`, `opts` (`protect`) and `provider` (its `props`); stack
rules receive an object with `resources`, a list of such objects. `report(message)` records a
violation. policy/__main__.py wraps them into a PulumiPolicy pack.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

SUPPORTED_KUBERNETES_VERSIONS = ("1.33", "1.34", "1.35")
CONTENT_ADDRESSED = re.compile(r"/[0-9a-f]{20}/?$")
AWS_KEY_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
GPU_TAINT = {"key": "nvidia.com/gpu", "effect": "NO_SCHEDULE"}

Report = Callable[..., None]

BUCKET = "aws:s3/bucket:Bucket"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"


@dataclass(frozen=True)
class Rule:
    name: str
    func: Callable[[Any, Report], None]
    kind: str  # "resource" or "stack"
    resource_types: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        return (self.func.__doc__ or "").strip().splitlines()[0]


RULES: list[Rule] = []


def resource_rule(name: str, *types: str):
    def register(func):
        RULES.append(Rule(name, func, "resource", types))
        return func
    return register


def stack_rule(name: str):
    def register(func):
        RULES.append(Rule(name, func, "stack"))
        return func
    return register


# ---- helpers ------------------------------------------------------------------------------

def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _statements(policy: Any) -> list[dict[str, Any]]:
    document = _json(policy) or {}
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    return statements if isinstance(statements, list) else [statements]


def _dict(value: Any) -> dict[str, Any]:
    """A nested value as a dict; during preview a computed value is unknown, not a dict."""
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


ENVIRONMENT_LABEL = "mlserve.io/environment"


def environment(resources: Iterable[Any]) -> str | None:
    """The stack's environment: the mlserve:environment default tag of its AWS provider, or the
    mlserve.io/environment label of its namespaces (stacks on an existing cluster)."""
    for res in resources:
        if res.resource_type == "pulumi:providers:aws":
            tags = (_json(res.props.get("defaultTags")) or {}).get("tags") or {}
            if "mlserve:environment" in tags:
                return tags["mlserve:environment"]
        if res.resource_type == "kubernetes:core/v1:Namespace":
            labels = _dict(_dict(res.props.get("metadata")).get("labels"))
            if ENVIRONMENT_LABEL in labels:
                return labels[ENVIRONMENT_LABEL]
    return None


def _resource_environment(args: Any) -> str | None:
    provider = getattr(args, "provider", None)
    return environment([provider]) if provider is not None else None


def _of(resources: Iterable[Any], type_: str) -> list[Any]:
    return [r for r in resources if r.resource_type == type_]


def _bucket_configs(resources: list[Any], type_: str) -> dict[str, Any]:
    """Bucket URN -> the resource of `type_` configuring it (pulumi-aws v7 splits these out).

    Paired through the `bucket` property's dependency, not its value: a new bucket's name is
    unknown during preview.
    """
    pairs = {}
    for config in _of(resources, type_):
        for bucket in (getattr(config, "property_dependencies", None) or {}).get("bucket", []):
            pairs[bucket.urn] = config
    return pairs


def _bucket_ids(resources: list[Any]) -> list[tuple[Any, str]]:
    return [(b, b.urn) for b in _of(resources, BUCKET)]


# ---- S3 -------------------------------------------------------------------------------------

@stack_rule("s3-bucket-encrypted")
def s3_bucket_encrypted(args: Any, report: Report) -> None:
    """Every S3 bucket has default encryption (SSE-KMS or SSE-S3); model files are IP (CIS AWS 2.1.1)."""
    configs = _bucket_configs(args.resources, "aws:s3/bucketServerSideEncryptionConfiguration:"
                                              "BucketServerSideEncryptionConfiguration")
    for bucket, bucket_id in _bucket_ids(args.resources):
        rules = (configs.get(bucket_id).props.get("rules") if bucket_id in configs else None) or []
        algorithms = [(r.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
                      for r in rules]
        if not any(a in ("aws:kms", "aws:kms:dsse", "AES256") for a in algorithms):
            report(f"bucket {bucket.name} has no default encryption configuration")


@stack_rule("s3-public-access-blocked")
def s3_public_access_blocked(args: Any, report: Report) -> None:
    """Every S3 bucket blocks public ACLs and policies, all four switches (CIS AWS 2.1.4)."""
    blocks = _bucket_configs(args.resources,
                             "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    for bucket, bucket_id in _bucket_ids(args.resources):
        block = blocks.get(bucket_id)
        missing = [f for f in flags if not (block and block.props.get(f) is True)]
        if missing:
            report(f"bucket {bucket.name}: public access not blocked: {missing}")


@stack_rule("s3-versioning")
def s3_versioning(args: Any, report: Report) -> None:
    """Every S3 bucket is versioned, so an overwritten or deleted model can be recovered."""
    versioning = _bucket_configs(args.resources, "aws:s3/bucketVersioning:BucketVersioning")
    for bucket, bucket_id in _bucket_ids(args.resources):
        config = versioning.get(bucket_id)
        status = ((config.props.get("versioningConfiguration") or {}).get("status")
                  if config else None)
        if status != "Enabled":
            report(f"bucket {bucket.name}: versioning is not enabled")


@stack_rule("s3-tls-only")
def s3_tls_only(args: Any, report: Report) -> None:
    """Every S3 bucket policy denies requests without TLS (AWS S3 security best practices)."""
    policies = _bucket_configs(args.resources, "aws:s3/bucketPolicy:BucketPolicy")
    for bucket, bucket_id in _bucket_ids(args.resources):
        policy = policies.get(bucket_id)
        denies = [s for s in _statements(policy.props.get("policy") if policy else None)
                  if s.get("Effect") == "Deny" and
                  (s.get("Condition") or {}).get("Bool", {}).get("aws:SecureTransport")
                  in ("false", False)]
        if not denies:
            report(f"bucket {bucket.name}: no policy statement denies aws:SecureTransport=false")


@resource_rule("s3-no-public-acl", BUCKET, "aws:s3/bucketAclV2:BucketAclV2",
               "aws:s3/bucketAcl:BucketAcl")
def s3_no_public_acl(args: Any, report: Report) -> None:
    """No bucket or bucket ACL grants public read or write (ACLs stay disabled)."""
    acl = args.props.get("acl")
    if acl in ("public-read", "public-read-write", "authenticated-read"):
        report(f"{args.name}: canned ACL {acl} makes the bucket public")


@stack_rule("s3-acls-disabled")
def s3_acls_disabled(args: Any, report: Report) -> None:
    """Every S3 bucket enforces bucket-owner ownership, which disables ACLs entirely."""
    ownership = _bucket_configs(args.resources,
                                "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    for bucket, bucket_id in _bucket_ids(args.resources):
        control = ownership.get(bucket_id)
        if not control or (control.props.get("rule") or {}).get(
                "objectOwnership") != "BucketOwnerEnforced":
            report(f"bucket {bucket.name}: object ownership is not BucketOwnerEnforced")


@stack_rule("prod-bucket-protected")
def prod_bucket_protected(args: Any, report: Report) -> None:
    """In prod, every S3 bucket is Pulumi-protected: a destroy or replace can't delete models."""
    if environment(args.resources) != "prod":
        return
    for bucket in _of(args.resources, BUCKET):
        if not bucket.opts.protect:
            report(f"bucket {bucket.name} is not protected in prod")
        if bucket.props.get("forceDestroy"):
            report(f"bucket {bucket.name} has forceDestroy in prod")


@resource_rule("kms-key-rotation", "aws:kms/key:Key")
def kms_key_rotation(args: Any, report: Report) -> None:
    """Customer-managed KMS keys rotate yearly (CIS AWS 3.6)."""
    if args.props.get("enableKeyRotation") is not True:
        report(f"KMS key {args.name} does not rotate")


# ---- EKS ------------------------------------------------------------------------------------

EKS = "aws:eks/cluster:Cluster"


@resource_rule("eks-secrets-encrypted", EKS)
def eks_secrets_encrypted(args: Any, report: Report) -> None:
    """EKS envelope-encrypts Kubernetes Secrets with a KMS key (CIS EKS 5.3.1)."""
    config = args.props.get("encryptionConfig") or {}
    if "secrets" not in (config.get("resources") or []):
        report(f"cluster {args.name}: Secrets are not envelope-encrypted")


@resource_rule("eks-api-authentication", EKS)
def eks_api_authentication(args: Any, report: Report) -> None:
    """EKS access is managed by access entries only (authenticationMode API, no aws-auth ConfigMap)."""
    mode = (args.props.get("accessConfig") or {}).get("authenticationMode")
    if mode != "API":
        report(f"cluster {args.name}: authenticationMode is {mode!r}, not API")


@resource_rule("eks-audit-logging", EKS)
def eks_audit_logging(args: Any, report: Report) -> None:
    """EKS sends api, audit and authenticator logs to CloudWatch (CIS EKS 2.1.1)."""
    types = set(args.props.get("enabledClusterLogTypes") or [])
    missing = sorted({"api", "audit", "authenticator"} - types)
    if missing:
        report(f"cluster {args.name}: control-plane logs missing {missing}")


@resource_rule("eks-endpoint-restricted", EKS)
def eks_endpoint_restricted(args: Any, report: Report) -> None:
    """The EKS API has a private endpoint, and in prod a public one only for listed CIDRs (CIS EKS 5.4.2)."""
    vpc = args.props.get("vpcConfig") or {}
    if vpc.get("endpointPrivateAccess") is not True:
        report(f"cluster {args.name}: private endpoint access is off")
    if (_resource_environment(args) == "prod" and vpc.get("endpointPublicAccess")
            and "0.0.0.0/0" in (vpc.get("publicAccessCidrs") or ["0.0.0.0/0"])):
        report(f"cluster {args.name}: public endpoint open to 0.0.0.0/0 in prod")


@resource_rule("eks-supported-version", EKS)
def eks_supported_version(args: Any, report: Report) -> None:
    """EKS runs a Kubernetes version in standard support (no extended-support fees, patched)."""
    if args.props.get("version") not in SUPPORTED_KUBERNETES_VERSIONS:
        report(f"cluster {args.name}: Kubernetes {args.props.get('version')!r} is not one of "
               f"{list(SUPPORTED_KUBERNETES_VERSIONS)}")


# ---- nodes ----------------------------------------------------------------------------------

@resource_rule("node-imdsv2", "aws:ec2/launchTemplate:LaunchTemplate")
def node_imdsv2(args: Any, report: Report) -> None:
    """Nodes require IMDSv2 with a hop limit of 1, so pods can't take the node's role (EKS best practices)."""
    metadata = args.props.get("metadataOptions") or {}
    if metadata.get("httpTokens") != "required":
        report(f"{args.name}: IMDSv2 not required")
    if metadata.get("httpPutResponseHopLimit") != 1:
        report(f"{args.name}: IMDS hop limit is {metadata.get('httpPutResponseHopLimit')}, not 1")


@resource_rule("node-volumes-encrypted", "aws:ec2/launchTemplate:LaunchTemplate")
def node_volumes_encrypted(args: Any, report: Report) -> None:
    """Every node volume is encrypted (CIS AWS 2.2.1)."""
    for mapping in args.props.get("blockDeviceMappings") or []:
        if str((mapping.get("ebs") or {}).get("encrypted")).lower() != "true":
            report(f"{args.name}: volume {mapping.get('deviceName')} is not encrypted")


@resource_rule("gpu-nodes-tainted", "aws:eks/nodeGroup:NodeGroup")
def gpu_nodes_tainted(args: Any, report: Report) -> None:
    """GPU node groups carry the nvidia.com/gpu NoSchedule taint, so only GPU work uses them."""
    if "NVIDIA" not in str(args.props.get("amiType", "")):
        return
    taints = args.props.get("taints") or []
    if not any(t.get("key") == GPU_TAINT["key"] and t.get("effect") == GPU_TAINT["effect"]
               for t in taints):
        report(f"GPU node group {args.name} is not tainted nvidia.com/gpu:NoSchedule")


@resource_rule("no-ssh-to-nodes", "aws:eks/nodeGroup:NodeGroup")
def no_ssh_to_nodes(args: Any, report: Report) -> None:
    """Node groups allow no SSH; break-glass access goes through SSM (CIS EKS 3.x)."""
    if args.props.get("remoteAccess"):
        report(f"node group {args.name} allows SSH (remoteAccess)")


# ---- IAM ------------------------------------------------------------------------------------

@resource_rule("iam-no-admin-wildcards", "aws:iam/rolePolicy:RolePolicy",
               "aws:iam/policy:Policy", "aws:iam/role:Role")
def iam_no_admin_wildcards(args: Any, report: Report) -> None:
    """No IAM policy allows every action on every resource (CIS AWS 1.16)."""
    documents = [args.props.get("policy")]
    documents += [p.get("policy") for p in args.props.get("inlinePolicies") or []]
    for document in documents:
        for statement in _statements(document):
            if statement.get("Effect") != "Allow":
                continue
            if "*" in _as_list(statement.get("Action")) and "*" in _as_list(
                    statement.get("Resource")):
                report(f"{args.name}: allows Action * on Resource *")


@resource_rule("irsa-trust-scoped", "aws:iam/role:Role")
def irsa_trust_scoped(args: Any, report: Report) -> None:
    """A role trusted through the cluster's OIDC issuer names exactly one service account and the STS audience."""
    for statement in _statements(args.props.get("assumeRolePolicy")):
        if "sts:AssumeRoleWithWebIdentity" not in _as_list(statement.get("Action")):
            continue
        condition = statement.get("Condition") or {}
        if set(condition) - {"StringEquals"}:
            report(f"role {args.name}: web-identity trust uses {sorted(condition)}, only "
                   "StringEquals is allowed")
        equals = condition.get("StringEquals") or {}
        subjects = [v for k, v in equals.items() if k.endswith(":sub")]
        audiences = [v for k, v in equals.items() if k.endswith(":aud")]
        if len(subjects) != 1 or not isinstance(subjects[0], str) or \
                not re.fullmatch(r"system:serviceaccount:[a-z0-9-]+:[a-z0-9-]+", subjects[0]):
            report(f"role {args.name}: web-identity trust is not scoped to one service account")
        if audiences != ["sts.amazonaws.com"]:
            report(f"role {args.name}: web-identity trust doesn't require aud sts.amazonaws.com")


@resource_rule("no-iam-users", "aws:iam/user:User")
def no_iam_users(args: Any, report: Report) -> None:
    """The stack creates no IAM users: people use SSO roles, workloads use IRSA."""
    report(f"IAM user {args.name}: use roles instead")


@resource_rule("no-access-keys", "aws:iam/accessKey:AccessKey")
def no_access_keys(args: Any, report: Report) -> None:
    """The stack creates no long-lived access keys (CIS AWS 1.x)."""
    report(f"access key {args.name}: long-lived keys are not allowed")


# ---- Kubernetes and serving ------------------------------------------------------------------

@resource_rule("helm-release-pinned", "kubernetes:helm.sh/v3:Release")
def helm_release_pinned(args: Any, report: Report) -> None:
    """Every Helm release pins an exact chart version, so an `up` never upgrades by surprise."""
    version = str(args.props.get("version") or "")
    if not re.fullmatch(r"v?\d+\.\d+\.\d+(-[\w.]+)?", version):
        report(f"release {args.name}: chart version {version!r} is not an exact version")


def _predictors(props: dict[str, Any]) -> list[dict[str, Any]]:
    spec = props.get("spec")
    if not isinstance(spec, dict):
        return []  # computed (e.g. a new bucket's name) until the update: checked then
    return [_dict(spec.get("predictor"))] + [_dict(_dict(c).get("predictor"))
                                             for c in spec.get("canary") or []]


@resource_rule("model-resources-set", ISVC)
def model_resources_set(args: Any, report: Report) -> None:
    """Model servers request and limit CPU and memory, so they're scheduled and can't starve a node."""
    for predictor in _predictors(args.props):
        resources = (predictor.get("model") or {}).get("resources") or {}
        for kind in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(resources.get(kind) or {})
            if missing:
                report(f"{args.name}: {kind} missing {sorted(missing)}")


@resource_rule("model-gpu-toleration", ISVC)
def model_gpu_toleration(args: Any, report: Report) -> None:
    """A model asking for a GPU tolerates the GPU taint, or it can never be scheduled."""
    for predictor in _predictors(args.props):
        limits = ((predictor.get("model") or {}).get("resources") or {}).get("limits") or {}
        if GPU_TAINT["key"] in limits and not any(
                t.get("key") == GPU_TAINT["key"] for t in predictor.get("tolerations") or []):
            report(f"{args.name}: requests a GPU without the {GPU_TAINT['key']} toleration")


@resource_rule("model-non-root", ISVC)
def model_non_root(args: Any, report: Report) -> None:
    """Model pods run as non-root with the runtime's default seccomp profile (Pod Security restricted)."""
    for predictor in _predictors(args.props):
        context = predictor.get("securityContext") or {}
        if context.get("runAsNonRoot") is not True:
            report(f"{args.name}: pods may run as root")
        if (context.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            report(f"{args.name}: no RuntimeDefault seccomp profile")


@resource_rule("model-storage-content-addressed", ISVC)
def model_storage_content_addressed(args: Any, report: Report) -> None:
    """Models load from a content-addressed, immutable prefix, never a mutable path."""
    for predictor in _predictors(args.props):
        uri = (predictor.get("model") or {}).get("storageUri") or ""
        if not CONTENT_ADDRESSED.search(uri):
            report(f"{args.name}: storageUri {uri!r} is not a content-addressed version")


@resource_rule("no-aws-keys-in-secrets", "kubernetes:core/v1:Secret")
def no_aws_keys_in_secrets(args: Any, report: Report) -> None:
    """No Kubernetes Secret holds AWS keys: pods use IRSA (keys of an S3-compatible store that isn't AWS excepted)."""
    endpoint = _dict(_dict(args.props.get("metadata")).get("annotations")).get(
        "serving.kserve.io/s3-endpoint", "")
    if endpoint and not endpoint.split(":")[0].endswith(".amazonaws.com"):
        return  # e.g. MinIO's keys: nothing on AWS to protect
    keys = set(_dict(args.props.get("data"))) | set(_dict(args.props.get("stringData")))
    found = sorted(k for k in keys if k.upper() in AWS_KEY_NAMES
                   or k.upper().endswith(("ACCESS_KEY_ID", "SECRET_ACCESS_KEY")))
    if found:
        report(f"Secret {args.name} holds AWS credentials {found}")


@stack_rule("prod-model-availability")
def prod_model_availability(args: Any, report: Report) -> None:
    """In prod every model keeps at least two replicas and a PodDisruptionBudget."""
    if environment(args.resources) != "prod":
        return
    budgets = {_dict(r.props.get("metadata")).get("name")
               for r in _of(args.resources, "kubernetes:policy/v1:PodDisruptionBudget")}
    for service in _of(args.resources, ISVC):
        name = _dict(service.props.get("metadata")).get("name")
        spec = service.props.get("spec")
        if not isinstance(spec, dict):
            continue
        predictor = _dict(spec.get("predictor"))
        if (predictor.get("minReplicas") or 0) < 2:
            report(f"{name}: minReplicas {predictor.get('minReplicas')} in prod (needs >= 2)")
        if name not in budgets:
            report(f"{name}: no PodDisruptionBudget in prod")
