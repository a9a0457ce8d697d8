"""The mlserve policy rules, importable without pulumi-policy so tests call them directly.

Each rule is a plain function with a docstring saying why it exists (its first line is the
rule's description in the pack and in docs/policy.md). Resource rules receive an object with
`resource_type`, `props`, `urn`, `name`, `opts` (`protect`) and `provider` (its `props`); stack
rules receive an object with `resources`, a list of such objects. `report(message)` records a
violation. policy/__main__.py wraps them into a PulumiPolicy pack.

What the engine hands a rule is not plain data: pulumi-policy 1.21 wraps every resource's
properties in read-only proxies (sdk/python/lib/pulumi_policy/proxy.py: `_DictProxy` is a
`collections.abc.Mapping`, `_ListProxy` a `Sequence`, neither a `dict` nor a `list`), whose item
access raises `UnknownValueError` for a value that is unknown during preview (policy.py turns
that into an advisory "can't run during preview"; the rule runs for real during the update).
So every rule reads nested values as Mappings and Sequences, never `isinstance(x, dict)`, and
tests/policy/test_engine_path.py runs the pack through pulumi-policy's own analyzer.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

try:  # imported as policy.rules (tests, tools)
    from . import baseline
except ImportError:  # imported as a top-level module by the pack's __main__.py
    import baseline  # type: ignore[no-redef]

SUPPORTED_KUBERNETES_VERSIONS = ("1.33", "1.34", "1.35")
CONTENT_ADDRESSED = re.compile(r"/[0-9a-f]{20}/?$")
AWS_KEY_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
GPU_TAINT = {"key": "nvidia.com/gpu", "effect": "NO_SCHEDULE"}
GPU_RESOURCE = "nvidia.com/gpu"
POOL_LABEL = "mlserve.io/pool"
TRACK_LABEL = "mlserve.io/track"
ENVIRONMENT_LABEL = "mlserve.io/environment"
ENVIRONMENT_TAG = "mlserve:environment"
# The pod labels each backend puts on a model's server pods (KServe: the InferenceService's name;
# Seldon Core v1: the SeldonDeployment's), which a disruption budget selects.
ISVC_POD_LABEL = "serving.kserve.io/inferenceservice"
SELDON_POD_LABEL = "seldon-deployment-id"

Report = Callable[..., None]

BUCKET = "aws:s3/bucket:Bucket"
EKS = "aws:eks/cluster:Cluster"
AWS_PROVIDER = "pulumi:providers:aws"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
SELDON = "kubernetes:machinelearning.seldon.io/v1:SeldonDeployment"
MODEL_SERVERS = (ISVC, SELDON)
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
INTERCEPTOR_ROUTE = "kubernetes:http.keda.sh/v1beta1:InterceptorRoute"


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


# ---- reading properties: Mappings and Sequences, never dict and list --------------------------

def _json(value: Any) -> Any:
    """Policy documents and provider settings arrive as JSON strings."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _map(value: Any) -> Mapping[str, Any]:
    """A nested object, or an empty one when it is absent or not an object."""
    return value if isinstance(value, Mapping) else {}


def _seq(value: Any) -> Sequence[Any]:
    """A nested list, or an empty one when it is absent or not a list (a string is not)."""
    return value if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else []


def _as_list(value: Any) -> list[Any]:
    """IAM's "one or many": a single value or a list of them."""
    return list(value) if _seq(value) else [value]


def _path(value: Any, *keys: str) -> Any:
    for key in keys:
        value = _map(value).get(key)
    return value


def _number(value: Any) -> float | None:
    """Numbers travel as protobuf doubles (2.0) or, from some providers, as strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _statements(policy: Any) -> list[Mapping[str, Any]]:
    statements = _map(_json(policy)).get("Statement")
    return [s for s in _as_list(statements) if isinstance(s, Mapping)]


def _of(resources: Iterable[Any], *types: str) -> list[Any]:
    return [r for r in resources if r.resource_type in types]


def _depends(resource: Any, prop: str) -> list[Any]:
    return list((getattr(resource, "property_dependencies", None) or {}).get(prop, []))


# ---- which environment: fail closed --------------------------------------------------------------

def _environment_claims(resources: Iterable[Any]) -> Iterator[str]:
    """What the stack says about its environment: the mlserve:environment default tag of its AWS
    providers and the mlserve.io/environment label of its namespaces (clusters the stack didn't
    create)."""
    for res in resources:
        if res is None:
            continue
        if res.resource_type == AWS_PROVIDER:
            tags = _map(_map(_json(res.props.get("defaultTags"))).get("tags"))
            if ENVIRONMENT_TAG in tags:
                yield str(tags[ENVIRONMENT_TAG])
        elif res.resource_type == "kubernetes:core/v1:Namespace":
            labels = _map(_path(res.props, "metadata", "labels"))
            if ENVIRONMENT_LABEL in labels:
                yield str(labels[ENVIRONMENT_LABEL])


def _configured_environment() -> str | None:
    """mlserve:environment from the stack's configuration, which the Python language host hands
    a policy pack in PULUMI_CONFIG (pulumi sdk/python/cmd/pulumi-language-python/main.go,
    RunPlugin: "adjust the environment to include stack configuration")."""
    try:
        config = json.loads(os.environ.get("PULUMI_CONFIG") or "{}")
    except ValueError:
        return None
    value = config.get("mlserve:environment") if isinstance(config, Mapping) else None
    return str(value) if value is not None else None


def environment(resources: Iterable[Any]) -> str:
    """The stack's environment, failing closed: "prod" unless every claim (stack config, AWS
    provider tags, namespace labels) agrees on one known non-prod environment. A stack that says
    nothing, says something unknown, or contradicts itself gets the prod rules."""
    claims = set(_environment_claims(resources))
    if (configured := _configured_environment()) is not None:
        claims.add(configured)
    if len(claims) == 1 and claims <= set(baseline.ENVIRONMENTS) - {"prod"}:
        return claims.pop()
    return "prod"


def _is_prod(resources: Iterable[Any]) -> bool:
    return environment(resources) == "prod"


def _provider_settings(resources: Iterable[Any]) -> list[Mapping[str, Any]]:
    return [r.props for r in _of(resources, AWS_PROVIDER)]


def waivers(resources: Iterable[Any]) -> set[str]:
    """Prod rules the stack waives explicitly (`prodWaivers`), read from its AWS provider's
    default tags: every AWS resource carries them, so the waiver is visible in the account."""
    found: set[str] = set()
    for props in _provider_settings(resources):
        tags = _map(_map(_json(props.get("defaultTags"))).get("tags"))
        found |= baseline.parse_waivers(tags.get(baseline.WAIVERS_TAG))
    return found


# ---- S3 -------------------------------------------------------------------------------------

def _bucket_configs(resources: list[Any], type_: str) -> dict[str, Any]:
    """Bucket URN -> the resource of `type_` configuring it (pulumi-aws v7 splits these out).

    Paired through the `bucket` property's dependency, not its value: a new bucket's name is
    unknown during preview.
    """
    pairs = {}
    for config in _of(resources, type_):
        for bucket in _depends(config, "bucket"):
            pairs[bucket.urn] = config
    return pairs


def _bucket_ids(resources: list[Any]) -> list[tuple[Any, str]]:
    return [(b, b.urn) for b in _of(resources, BUCKET)]


def _bucket_policy_statements(resources: list[Any]) -> Iterator[tuple[Any, list[Any]]]:
    policies = _bucket_configs(resources, "aws:s3/bucketPolicy:BucketPolicy")
    for bucket, bucket_id in _bucket_ids(resources):
        policy = policies.get(bucket_id)
        yield bucket, _statements(policy.props.get("policy") if policy else None)


@stack_rule("s3-bucket-encrypted")
def s3_bucket_encrypted(args: Any, report: Report) -> None:
    """Every S3 bucket has default encryption (SSE-KMS or SSE-S3); model files are IP (CIS AWS 2.1.1)."""
    configs = _bucket_configs(args.resources, "aws:s3/bucketServerSideEncryptionConfiguration:"
                                              "BucketServerSideEncryptionConfiguration")
    for bucket, bucket_id in _bucket_ids(args.resources):
        rules = _seq(configs[bucket_id].props.get("rules")) if bucket_id in configs else []
        algorithms = [_path(r, "applyServerSideEncryptionByDefault", "sseAlgorithm")
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
        status = _path(config.props, "versioningConfiguration", "status") if config else None
        if status != "Enabled":
            report(f"bucket {bucket.name}: versioning is not enabled")


@stack_rule("s3-tls-only")
def s3_tls_only(args: Any, report: Report) -> None:
    """Every S3 bucket policy denies requests without TLS (AWS S3 security best practices)."""
    for bucket, statements in _bucket_policy_statements(args.resources):
        denies = [s for s in statements if s.get("Effect") == "Deny" and
                  _path(s, "Condition", "Bool", "aws:SecureTransport") in ("false", False)]
        if not denies:
            report(f"bucket {bucket.name}: no policy statement denies aws:SecureTransport=false")


@stack_rule("s3-tls-floor")
def s3_tls_floor(args: Any, report: Report) -> None:
    """Every S3 bucket policy denies TLS versions below 1.2 (s3:TlsVersion), not only plaintext."""
    floor = baseline.MIN_S3_TLS_VERSION
    for bucket, statements in _bucket_policy_statements(args.resources):
        floors = [_number(_path(s, "Condition", "NumericLessThan", "s3:TlsVersion"))
                  for s in statements if s.get("Effect") == "Deny"]
        if not any(f is not None and f >= floor for f in floors):
            found = [f for f in floors if f is not None]
            report(f"bucket {bucket.name}: no policy statement denies s3:TlsVersion below "
                   f"{floor}" + (f" (denies below {max(found)} only)" if found else ""))


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
        if not control or _path(control.props, "rule", "objectOwnership") != "BucketOwnerEnforced":
            report(f"bucket {bucket.name}: object ownership is not BucketOwnerEnforced")


@stack_rule("prod-bucket-protected")
def prod_bucket_protected(args: Any, report: Report) -> None:
    """In prod, every S3 bucket is Pulumi-protected: a destroy or replace can't delete models."""
    if not _is_prod(args.resources):
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

@resource_rule("eks-secrets-encrypted", EKS)
def eks_secrets_encrypted(args: Any, report: Report) -> None:
    """EKS envelope-encrypts Kubernetes Secrets with a KMS key (CIS EKS 5.3.1)."""
    if "secrets" not in _seq(_map(args.props.get("encryptionConfig")).get("resources")):
        report(f"cluster {args.name}: Secrets are not envelope-encrypted")


@resource_rule("eks-api-authentication", EKS)
def eks_api_authentication(args: Any, report: Report) -> None:
    """EKS access is managed by access entries only (authenticationMode API, no aws-auth ConfigMap)."""
    mode = _map(args.props.get("accessConfig")).get("authenticationMode")
    if mode != "API":
        report(f"cluster {args.name}: authenticationMode is {mode!r}, not API")


@resource_rule("eks-audit-logging", EKS)
def eks_audit_logging(args: Any, report: Report) -> None:
    """EKS sends api, audit and authenticator logs to CloudWatch (CIS EKS 2.1.1)."""
    types = set(_seq(args.props.get("enabledClusterLogTypes")))
    missing = sorted({"api", "audit", "authenticator"} - types)
    if missing:
        report(f"cluster {args.name}: control-plane logs missing {missing}")


@resource_rule("eks-endpoint-restricted", EKS)
def eks_endpoint_restricted(args: Any, report: Report) -> None:
    """The EKS API has a private endpoint; a public one admits only public CIDRs, in prod at most a /16 in all (CIS EKS 5.4.2)."""
    vpc = _map(args.props.get("vpcConfig"))
    if vpc.get("endpointPrivateAccess") is not True:
        report(f"cluster {args.name}: private endpoint access is off")
    if vpc.get("endpointPublicAccess") is False:
        return
    # Unset means on: EKS's default is a public endpoint open to 0.0.0.0/0.
    cidrs = [str(c) for c in _seq(vpc.get("publicAccessCidrs"))]
    try:
        problem = baseline.public_endpoint_problem(cidrs, _is_prod([args.provider]))
    except ValueError as exc:
        problem = f"publicAccessCidrs {cidrs} are not IPv4 CIDRs ({exc})"
    if problem:
        report(f"cluster {args.name}: public endpoint {problem}")


@resource_rule("eks-supported-version", EKS)
def eks_supported_version(args: Any, report: Report) -> None:
    """EKS runs a Kubernetes version in standard support (no extended-support fees, patched)."""
    if args.props.get("version") not in SUPPORTED_KUBERNETES_VERSIONS:
        report(f"cluster {args.name}: Kubernetes {args.props.get('version')!r} is not one of "
               f"{list(SUPPORTED_KUBERNETES_VERSIONS)}")


@resource_rule("prod-eks-deletion-protection", EKS)
def prod_eks_deletion_protection(args: Any, report: Report) -> None:
    """In prod, the EKS cluster has deletion protection: deleting it takes a deliberate second step."""
    if _is_prod([args.provider]) and args.props.get("deletionProtection") is not True:
        report(f"cluster {args.name}: deletion protection is off in prod")


def _retention(log_group: Any) -> float | None:
    """Retention in days; None for "never expire" (unset or 0)."""
    days = _number(log_group.props.get("retentionInDays"))
    return days if days else None


@stack_rule("prod-audit-log-retention")
def prod_audit_log_retention(args: Any, report: Report) -> None:
    """In prod, the EKS control-plane (audit) logs are kept at least a year."""
    if not _is_prod(args.resources):
        return
    floor = baseline.PROD_MIN_AUDIT_LOG_RETENTION_DAYS
    for group in _of(args.resources, "aws:cloudwatch/logGroup:LogGroup"):
        name = str(group.props.get("name") or "")
        days = _retention(group)
        if re.fullmatch(r"/aws/eks/[^/]+/cluster", name) and days is not None and days < floor:
            report(f"log group {name}: kept {days:g} days in prod (needs >= {floor})")


@stack_rule("prod-vpc-flow-logs")
def prod_vpc_flow_logs(args: Any, report: Report) -> None:
    """In prod, every VPC the stack creates logs its rejected traffic, kept at least 90 days."""
    if not _is_prod(args.resources):
        return
    floor = baseline.PROD_MIN_FLOW_LOG_RETENTION_DAYS
    logged: dict[str, list[Any]] = {}
    for flow_log in _of(args.resources, "aws:ec2/flowLog:FlowLog"):
        for vpc in _depends(flow_log, "vpcId"):
            logged.setdefault(vpc.urn, []).extend(_depends(flow_log, "logDestination"))
    for vpc in _of(args.resources, "aws:ec2/vpc:Vpc"):
        if vpc.urn not in logged:
            report(f"VPC {vpc.name} has no flow log in prod")
            continue
        for group in logged[vpc.urn]:
            days = _retention(group)
            if days is not None and days < floor:
                report(f"VPC {vpc.name}: flow log kept {days:g} days in prod (needs >= {floor})")


def _tags(resource: Any) -> Mapping[str, Any]:
    return _map(resource.props.get("tags"))


@stack_rule("prod-nat-per-az")
def prod_nat_per_az(args: Any, report: Report) -> None:
    """In prod, every AZ with private subnets has its own NAT gateway (waivable: singleNatGateway)."""
    if not _is_prod(args.resources) or "singleNatGateway" in waivers(args.resources):
        return
    private_zones = {str(s.props.get("availabilityZone"))
                     for s in _of(args.resources, "aws:ec2/subnet:Subnet")
                     if "kubernetes.io/role/internal-elb" in _tags(s)}
    nat_zones = {str(subnet.props.get("availabilityZone"))
                 for nat in _of(args.resources, "aws:ec2/natGateway:NatGateway")
                 for subnet in _depends(nat, "subnetId")}
    if missing := sorted(private_zones - nat_zones):
        report(f"AZs {missing} have no NAT gateway of their own in prod; waive with prodWaivers "
               "singleNatGateway if that is a choice")


def _account_of(arn: str) -> str | None:
    match = re.match(r"arn:[\w-]+:[\w-]*:[\w-]*:(\d{12}):", arn)
    return match.group(1) if match else None


@stack_rule("admins-own-account")
def admins_own_account(args: Any, report: Report) -> None:
    """The AWS provider is pinned to the stack's account (required in prod) and every cluster access entry is a principal of it."""
    providers = _provider_settings(args.resources)
    pinned: set[str] = set()
    for props in providers:
        pinned |= {str(a) for a in _seq(_json(props.get("allowedAccountIds")))}
    if providers and _is_prod(args.resources) and len(pinned) != 1:
        report(f"the AWS provider must allow exactly the stack's account in prod, allows "
               f"{sorted(pinned) or 'any'}")
    for entry in _of(args.resources, "aws:eks/accessEntry:AccessEntry"):
        # People's entries. A node entry (EC2_LINUX) names a node role the stack creates in its
        # own account, whose ARN is unknown until the role exists.
        if str(entry.props.get("type") or "STANDARD") != "STANDARD":
            continue
        principal = str(entry.props.get("principalArn") or "")
        if pinned and _account_of(principal) not in pinned:
            report(f"access entry {entry.name}: {principal} is not in the stack's account "
                   f"{sorted(pinned)}")


# ---- nodes ----------------------------------------------------------------------------------

def _check_imds(name: str, metadata: Any, report: Report) -> None:
    """A launch template's or an EC2NodeClass's metadataOptions (the same field names)."""
    metadata = _map(metadata)
    if metadata.get("httpTokens") != "required":
        report(f"{name}: IMDSv2 not required")
    if _number(metadata.get("httpPutResponseHopLimit")) != 1:
        report(f"{name}: IMDS hop limit is {metadata.get('httpPutResponseHopLimit')}, not 1")


def _check_volumes_encrypted(name: str, mappings: Any, report: Report) -> None:
    for mapping in _seq(mappings):
        if str(_path(mapping, "ebs", "encrypted")).lower() != "true":
            report(f"{name}: volume {_map(mapping).get('deviceName')} is not encrypted")


@resource_rule("node-imdsv2", "aws:ec2/launchTemplate:LaunchTemplate")
def node_imdsv2(args: Any, report: Report) -> None:
    """Nodes require IMDSv2 with a hop limit of 1, so pods can't take the node's role (EKS best practices)."""
    _check_imds(args.name, args.props.get("metadataOptions"), report)


@resource_rule("node-volumes-encrypted", "aws:ec2/launchTemplate:LaunchTemplate")
def node_volumes_encrypted(args: Any, report: Report) -> None:
    """Every node volume is encrypted (CIS AWS 2.2.1)."""
    _check_volumes_encrypted(args.name, args.props.get("blockDeviceMappings"), report)


@resource_rule("gpu-nodes-tainted", "aws:eks/nodeGroup:NodeGroup")
def gpu_nodes_tainted(args: Any, report: Report) -> None:
    """GPU node groups carry the nvidia.com/gpu NoSchedule taint, so only GPU work uses them."""
    if "NVIDIA" not in str(args.props.get("amiType", "")):
        return
    if not any(_map(t).get("key") == GPU_TAINT["key"] and _map(t).get("effect") ==
               GPU_TAINT["effect"] for t in _seq(args.props.get("taints"))):
        report(f"GPU node group {args.name} is not tainted nvidia.com/gpu:NoSchedule")


# ---- Karpenter's GPU nodes: the same guarantees as the node groups' launch templates ----------
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"


@resource_rule("karpenter-node-class-imdsv2", NODE_CLASS)
def karpenter_node_class_imdsv2(args: Any, report: Report) -> None:
    """Karpenter nodes require IMDSv2 with a hop limit of 1, so pods can't take the node's role."""
    _check_imds(args.name, _path(args.props, "spec", "metadataOptions"), report)


@resource_rule("karpenter-node-class-volumes-encrypted", NODE_CLASS)
def karpenter_node_class_volumes_encrypted(args: Any, report: Report) -> None:
    """Karpenter node volumes are declared and every one is encrypted (CIS AWS 2.2.1)."""
    mappings = _path(args.props, "spec", "blockDeviceMappings")
    if not _seq(mappings):
        report(f"{args.name}: no blockDeviceMappings (the AMI's defaults decide encryption)")
    _check_volumes_encrypted(args.name, mappings, report)


def _gpu_node_pool(props: Any) -> bool:
    template = _path(props, "spec", "template")
    return (str(_map(_path(template, "metadata", "labels")).get(GPU_PRESENT_LABEL)) == "true"
            or GPU_RESOURCE in _map(_path(props, "spec", "limits")))


@resource_rule("karpenter-gpu-pools-tainted", NODE_POOL)
def karpenter_gpu_pools_tainted(args: Any, report: Report) -> None:
    """GPU NodePools taint their nodes nvidia.com/gpu:NoSchedule, so only GPU work uses them."""
    if not _gpu_node_pool(args.props):
        return
    taints = _seq(_path(args.props, "spec", "template", "spec", "taints"))
    if not any(_map(t).get("key") == GPU_TAINT["key"] and _map(t).get("effect") == "NoSchedule"
               for t in taints):
        report(f"GPU NodePool {args.name} is not tainted nvidia.com/gpu:NoSchedule")


@resource_rule("karpenter-pools-limited", NODE_POOL)
def karpenter_pools_limited(args: Any, report: Report) -> None:
    """Every NodePool has limits, and a GPU NodePool limits nvidia.com/gpu: no unbounded spend."""
    limits = _map(_path(args.props, "spec", "limits"))
    if not limits:
        report(f"NodePool {args.name} has no limits: it may launch without bound")
    elif _gpu_node_pool(args.props) and _number(limits.get(GPU_RESOURCE)) is None:
        report(f"GPU NodePool {args.name} sets no nvidia.com/gpu limit")


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
    documents += [_map(p).get("policy") for p in _seq(args.props.get("inlinePolicies"))]
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
        condition = _map(statement.get("Condition"))
        if set(condition) - {"StringEquals"}:
            report(f"role {args.name}: web-identity trust uses {sorted(condition)}, only "
                   "StringEquals is allowed")
        equals = _map(condition.get("StringEquals"))
        subjects = [equals[k] for k in equals if k.endswith(":sub")]
        audiences = [equals[k] for k in equals if k.endswith(":aud")]
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


# ---- Kubernetes platform ----------------------------------------------------------------------

def _chart(release: Any) -> str:
    return str(release.props.get("chart") or "").rsplit("/", 1)[-1]


@resource_rule("helm-release-pinned", HELM_RELEASE)
def helm_release_pinned(args: Any, report: Report) -> None:
    """Every Helm release pins an exact chart version, so an `up` never upgrades by surprise."""
    version = str(args.props.get("version") or "")
    if not re.fullmatch(r"v?\d+\.\d+\.\d+(-[\w.]+)?", version):
        report(f"release {args.name}: chart version {version!r} is not an exact version")


# chart -> value paths that set a controller's replica floor; each must be >= 2 in prod.
HA_VALUES: dict[str, tuple[tuple[str, ...], ...]] = {
    "cert-manager": (("replicaCount",), ("webhook", "replicaCount"),
                     ("cainjector", "replicaCount")),
    "istiod": (("replicaCount",), ("autoscaleMin",)),
    "gateway": (("autoscaling", "minReplicas"),),
    "keda": (("operator", "replicaCount"), ("metricsServer", "replicaCount"),
             ("webhooks", "replicaCount")),
    "metrics-server": (("replicas",),),
    "aws-load-balancer-controller": (("replicaCount",),),
    "kube-prometheus-stack": (("prometheus", "prometheusSpec", "replicas"),),
}


@stack_rule("prod-high-availability")
def prod_high_availability(args: Any, report: Report) -> None:
    """In prod, every platform controller runs at least two replicas, on at least two system nodes."""
    if not _is_prod(args.resources):
        return
    floor = baseline.PROD_MIN_SYSTEM_NODES
    for group in _of(args.resources, "aws:eks/nodeGroup:NodeGroup"):
        if _map(group.props.get("labels")).get(POOL_LABEL) == "system":
            size = _number(_path(group.props, "scalingConfig", "minSize"))
            if size is None or size < floor:
                report(f"node group {group.name}: {size} system node(s) minimum in prod "
                       f"(needs >= {floor})")
    for release in _of(args.resources, HELM_RELEASE):
        values = _map(release.props.get("values"))
        for path in HA_VALUES.get(_chart(release), ()):
            replicas = _number(_path(values, *path))
            if replicas is None or replicas < 2:
                report(f"release {release.name}: {'.'.join(path)} is {_path(values, *path)} in "
                       "prod (needs >= 2)")
        if _chart(release) == "kube-prometheus-stack" and \
                _path(values, "alertmanager", "enabled") is not False:
            replicas = _number(_path(values, "alertmanager", "alertmanagerSpec", "replicas"))
            if replicas is None or replicas < 2:
                report(f"release {release.name}: alertmanager.alertmanagerSpec.replicas is "
                       f"{replicas} in prod (needs >= 2)")


@stack_rule("prod-alert-receiver")
def prod_alert_receiver(args: Any, report: Report) -> None:
    """In prod, Alertmanager runs and its default route ends at a receiver that notifies someone."""
    if not _is_prod(args.resources):
        return
    releases = [r for r in _of(args.resources, HELM_RELEASE)
                if _chart(r) == "kube-prometheus-stack"]
    if not releases:
        report("no kube-prometheus-stack release in prod: alerts reach nobody")
    for release in releases:
        alertmanager = _map(_map(release.props.get("values")).get("alertmanager"))
        if alertmanager.get("enabled") is False:
            report(f"release {release.name}: Alertmanager is disabled in prod")
            continue
        config = _map(alertmanager.get("config"))
        receiver = _path(config, "route", "receiver")
        integrations = [key for r in _seq(config.get("receivers"))
                        if _map(r).get("name") == receiver
                        for key, value in _map(r).items() if key.endswith("_configs") and
                        _seq(value)]
        if not integrations:
            report(f"release {release.name}: the default route's receiver {receiver!r} notifies "
                   "nobody in prod (configure platform.monitoring.alerts)")


# ---- model servers: every backend ------------------------------------------------------------

@dataclass
class ModelPod:
    """One pod template that serves a model, whatever the backend."""

    where: str
    pod: Mapping[str, Any]
    """The pod-level settings: tolerations, securityContext, nodeSelector."""
    containers: list[Mapping[str, Any]]
    """What carries `resources`: KServe's predictor.model (and any containers), Seldon's
    componentSpecs[].spec.containers."""
    storage_uris: list[Any]
    min_replicas: Any
    stable: bool = True


def _isvc_pods(spec: Mapping[str, Any], stable: bool) -> Iterator[ModelPod]:
    predictors = [("spec.predictor", _map(spec.get("predictor")), stable)]
    predictors += [(f"spec.canary[{i}].predictor", _map(_map(c).get("predictor")), False)
                   for i, c in enumerate(_seq(spec.get("canary")))]
    for where, predictor, on_stable in predictors:
        model = _map(predictor.get("model"))
        containers = [model, *[_map(c) for c in _seq(predictor.get("containers"))]]
        uris = [model["storageUri"]] if "storageUri" in model else []
        yield ModelPod(where, predictor, [c for c in containers if c], uris,
                       predictor.get("minReplicas"), on_stable)


def _graph_uris(graph: Mapping[str, Any]) -> Iterator[Any]:
    if "modelUri" in graph:
        yield graph["modelUri"]
    for child in _seq(graph.get("children")):
        yield from _graph_uris(_map(child))


def _seldon_pods(spec: Mapping[str, Any], stable: bool) -> Iterator[ModelPod]:
    for p, predictor in enumerate(_seq(spec.get("predictors"))):
        predictor = _map(predictor)
        uris = list(_graph_uris(_map(predictor.get("graph"))))
        components = _seq(predictor.get("componentSpecs"))
        if not components:  # the operator's defaults: no resources, no security context
            yield ModelPod(f"spec.predictors[{p}]", {}, [], uris,
                           predictor.get("replicas", 1), stable)
        for c, component in enumerate(components):
            component = _map(component)
            pod = _map(component.get("spec"))
            if "kedaSpec" in component:
                replicas = _map(component.get("kedaSpec")).get("minReplicaCount")
            elif "hpaSpec" in component:
                replicas = _map(component.get("hpaSpec")).get("minReplicas")
            else:
                replicas = component.get("replicas", predictor.get("replicas", 1))
            yield ModelPod(f"spec.predictors[{p}].componentSpecs[{c}]", pod,
                           [_map(x) for x in _seq(pod.get("containers"))], uris, replicas,
                           stable)


def _labels(server: Any) -> Mapping[str, Any]:
    return _map(_path(server.props, "metadata", "labels"))


def _stable(server: Any) -> bool:
    """The stable track: an object without the track label counts as stable (fail closed)."""
    return _labels(server).get(TRACK_LABEL, "stable") != "canary"


def model_pods(server: Any) -> list[ModelPod]:
    spec = _map(server.props.get("spec"))
    if server.resource_type == SELDON:
        return list(_seldon_pods(spec, _stable(server)))
    return list(_isvc_pods(spec, _stable(server)))


def _name(server: Any) -> str:
    return str(_path(server.props, "metadata", "name") or server.name)


@resource_rule("model-resources-set", *MODEL_SERVERS)
def model_resources_set(args: Any, report: Report) -> None:
    """Model servers request and limit CPU and memory, so they're scheduled and can't starve a node."""
    for pod in model_pods(args):
        if not pod.containers:
            report(f"{_name(args)} {pod.where}: no container to set resources on")
        for container in pod.containers:
            resources = _map(container.get("resources"))
            for kind in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(_map(resources.get(kind)))
                if missing:
                    report(f"{_name(args)} {pod.where}: {kind} missing {sorted(missing)}")


def _tolerates_gpu(pod: Mapping[str, Any]) -> bool:
    for toleration in _seq(pod.get("tolerations")):
        toleration = _map(toleration)
        if toleration.get("key") == GPU_TAINT["key"] or (
                not toleration.get("key") and toleration.get("operator") == "Exists"):
            return True
    return False


@resource_rule("model-gpu-toleration", *MODEL_SERVERS)
def model_gpu_toleration(args: Any, report: Report) -> None:
    """A model asking for a GPU tolerates the GPU taint, or it can never be scheduled."""
    for pod in model_pods(args):
        wants_gpu = any(GPU_RESOURCE in _map(_map(c.get("resources")).get("limits"))
                        for c in pod.containers)
        if wants_gpu and not _tolerates_gpu(pod.pod):
            report(f"{_name(args)} {pod.where}: requests a GPU without the {GPU_RESOURCE} "
                   "toleration")


@resource_rule("model-non-root", *MODEL_SERVERS)
def model_non_root(args: Any, report: Report) -> None:
    """Model pods run as non-root with the runtime's default seccomp profile (Pod Security restricted)."""
    for pod in model_pods(args):
        context = _map(pod.pod.get("securityContext"))
        if context.get("runAsNonRoot") is not True:
            report(f"{_name(args)} {pod.where}: pods may run as root")
        elif (_number(context.get("runAsUser")) or 0) <= 0:
            # runAsNonRoot alone only refuses to start an image whose USER is root (Triton's
            # is): the pod must name its non-root uid.
            report(f"{_name(args)} {pod.where}: runAsNonRoot without a non-zero runAsUser")
        if _path(context, "seccompProfile", "type") != "RuntimeDefault":
            report(f"{_name(args)} {pod.where}: no RuntimeDefault seccomp profile")


@resource_rule("model-storage-content-addressed", *MODEL_SERVERS)
def model_storage_content_addressed(args: Any, report: Report) -> None:
    """Models load from a content-addressed, immutable prefix, never a mutable path."""
    for pod in model_pods(args):
        if not pod.storage_uris:
            report(f"{_name(args)} {pod.where}: no model storage URI")
        for uri in pod.storage_uris:
            if not CONTENT_ADDRESSED.search(str(uri)):
                report(f"{_name(args)} {pod.where}: storage URI {uri!r} is not a "
                       "content-addressed version")


@resource_rule("no-aws-keys-in-secrets", "kubernetes:core/v1:Secret")
def no_aws_keys_in_secrets(args: Any, report: Report) -> None:
    """No Kubernetes Secret holds AWS keys: pods use IRSA (keys of an S3-compatible store that isn't AWS excepted)."""
    endpoint = str(_path(args.props, "metadata", "annotations", "serving.kserve.io/s3-endpoint")
                   or "")
    if endpoint and not endpoint.split(":")[0].endswith(".amazonaws.com"):
        return  # e.g. MinIO's keys: nothing on AWS to protect
    keys = set(_map(args.props.get("data"))) | set(_map(args.props.get("stringData")))
    found = sorted(k for k in keys if k.upper() in AWS_KEY_NAMES
                   or k.upper().endswith(("ACCESS_KEY_ID", "SECRET_ACCESS_KEY")))
    if found:
        report(f"Secret {args.name} holds AWS credentials {found}")


def _pod_labels(server: Any) -> dict[str, Any]:
    """Labels the backend's controller puts on the object's server pods."""
    name = _name(server)
    if server.resource_type == SELDON:
        # The operator copies each componentSpec's metadata labels onto its pods
        # (seldon-core v1.17.1 operator/controllers/seldondeployment_controller.go:1046-1052).
        labels: dict[str, Any] = {}
        for predictor in _seq(_path(server.props, "spec", "predictors")):
            for component in _seq(_map(predictor).get("componentSpecs")):
                labels.update(_map(_path(component, "metadata", "labels")))
        return {**labels, SELDON_POD_LABEL: name}
    # KServe labels predictor pods with the InferenceService's name and its own labels.
    return {**_labels(server), ISVC_POD_LABEL: name}


def _budget_covers(budget: Any, server: Any) -> bool:
    spec = _map(budget.props.get("spec"))
    selector = _map(spec.get("selector"))
    wanted = _map(selector.get("matchLabels"))
    namespace = _path(budget.props, "metadata", "namespace")
    if not wanted or _seq(selector.get("matchExpressions")):
        return False
    if namespace and namespace != _path(server.props, "metadata", "namespace"):
        return False
    labels = _pod_labels(server)
    if any(labels.get(k) != v for k, v in ((k, wanted[k]) for k in wanted)):
        return False
    min_available = _number(spec.get("minAvailable"))
    return (min_available is not None and min_available >= 1) or "maxUnavailable" in spec


@stack_rule("prod-model-availability")
def prod_model_availability(args: Any, report: Report) -> None:
    """In prod every model's stable track keeps at least two replicas and a PodDisruptionBudget."""
    if not _is_prod(args.resources):
        return
    floor = baseline.PROD_MIN_MODEL_REPLICAS
    budgets = _of(args.resources, "kubernetes:policy/v1:PodDisruptionBudget")
    for server in _of(args.resources, *MODEL_SERVERS):
        stable = [p for p in model_pods(server) if p.stable]
        for pod in stable:
            replicas = _number(pod.min_replicas)
            if replicas is None or replicas < floor:
                report(f"{_name(server)} {pod.where}: minReplicas {pod.min_replicas} in prod "
                       f"(needs >= {floor})")
        if stable and not any(_budget_covers(b, server) for b in budgets):
            report(f"{_name(server)}: no PodDisruptionBudget selects its pods in prod")


@stack_rule("prod-model-capacity-on-demand")
def prod_model_capacity_on_demand(args: Any, report: Report) -> None:
    """In prod, GPU pools that serve models are ON_DEMAND, not SPOT (waivable: spotModelCapacity)."""
    if not _is_prod(args.resources) or "spotModelCapacity" in waivers(args.resources):
        return
    serving_pools = {str(_map(pod.pod.get("nodeSelector")).get(POOL_LABEL))
                     for server in _of(args.resources, *MODEL_SERVERS)
                     for pod in model_pods(server)}
    for group in _of(args.resources, "aws:eks/nodeGroup:NodeGroup"):
        pool = str(_map(group.props.get("labels")).get(POOL_LABEL))
        if pool in serving_pools and group.props.get("capacityType") == "SPOT":
            report(f"node group {group.name}: pool {pool!r} serves models on SPOT capacity in "
                   "prod; waive with prodWaivers spotModelCapacity if that is a choice")
    for node_pool in _of(args.resources, NODE_POOL):
        template = _path(node_pool.props, "spec", "template")
        pool = str(_map(_path(template, "metadata", "labels")).get(POOL_LABEL))
        capacity = [_map(r) for r in _seq(_path(template, "spec", "requirements"))
                    if _map(r).get("key") == "karpenter.sh/capacity-type"]
        # No capacity-type requirement: Karpenter may choose spot itself.
        spot = not capacity or any(r.get("operator") == "In" and "spot" in _seq(r.get("values"))
                                   or r.get("operator") in ("NotIn", "Exists")
                                   and "spot" not in _seq(r.get("values")) for r in capacity)
        if pool in serving_pools and spot:
            report(f"NodePool {node_pool.name}: pool {pool!r} serves models on spot capacity in "
                   "prod; waive with prodWaivers spotModelCapacity if that is a choice")


def _seldon_predictor_service(sdep: str, predictor: str) -> str:
    """The predictor's Service, `GetPredictorKey` (seldon-core v1.17.1
    operator/apis/machinelearning.seldon.io/v1/seldondeployment_types.go:92-96, 157-172): a name
    over 63 characters becomes `seldon-<md5>`."""
    name = f"{sdep}-{predictor}"
    return name if len(name) <= 63 else f"seldon-{hashlib.md5(name.encode()).hexdigest()}"


def _zero_replica_services(server: Any) -> list[str]:
    """The Services in front of a model server's pods that may be at zero replicas."""
    name = _name(server)
    if server.resource_type == SELDON:
        services = []
        for predictor in _seq(_path(server.props, "spec", "predictors")):
            predictor = _map(predictor)
            floors = [_number(pod.min_replicas)
                      for pod in _seldon_pods({"predictors": [predictor]}, True)]
            if any(floor == 0 for floor in floors):
                services.append(_seldon_predictor_service(name, str(predictor.get("name"))))
        return services
    floor = _number(_path(server.props, "spec", "predictor", "minReplicas"))
    # Unset: KServe's default floor is 1.
    return [f"{name}-predictor"] if floor is not None and floor <= 0 else []


@stack_rule("zero-replica-models-held")
def zero_replica_models_held(args: Any, report: Report) -> None:
    """A model that may be at zero replicas holds its HTTP requests while it wakes (budget and fallback).

    The KEDA HTTP add-on's interceptor holds a request for its InterceptorRoute's
    `timeouts.readiness`, then hands it to `coldStart.fallback` (503 with Retry-After); without a
    route the gateway answers 503 at once, without a budget a request waits until the client
    gives up, without a fallback the answer is 504 (docs/gpu-capacity.md, "Holding requests
    while a model wakes"). KServe's predictor Service, or Seldon's (`<sdep>-<predictor>`)."""
    routes = _of(args.resources, INTERCEPTOR_ROUTE)
    for server in _of(args.resources, *MODEL_SERVERS):
        name, namespace = _name(server), _path(server.props, "metadata", "namespace")
        for predictor in _zero_replica_services(server):
            held = [r for r in routes
                    if _path(r.props, "metadata", "namespace") == namespace
                    and _path(r.props, "spec", "target", "service") == predictor]
            if not held:
                report(f"{name}: minReplicas 0 and no InterceptorRoute targets {predictor}: "
                       "its requests get 503 while it wakes")
            for route in held:
                spec = _map(route.props.get("spec"))
                if not _path(spec, "timeouts", "readiness"):
                    report(f"{route.name}: no timeouts.readiness: a request to {name} waits "
                           "until the client gives up")
                if not _path(spec, "coldStart", "fallback", "service"):
                    report(f"{route.name}: no coldStart.fallback: past the budget {name} "
                           "answers 504 without Retry-After")
