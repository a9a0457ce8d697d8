"""Runs the whole Pulumi program offline under the SDK's mocks and records the resource graph.

What is recorded is what the engine itself would receive: every RegisterResource request (type,
name, inputs, parent, dependencies, provider, protect, ignoreChanges), every RegisterResourceOutputs
call, and every invoke. The mocks answer with realistic values (ARNs, endpoints, OIDC issuers,
Auto Scaling group names) so code that derives from them runs for real.
"""

from __future__ import annotations

import hashlib
import json
import runpy
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.config import set_all_config
from pulumi.runtime.settings import ROOT, get_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT_DIR = Path(__file__).resolve().parent.parent
PROJECT = "mlserve"
STACKS = ("dev", "staging", "prod")
ACCOUNT = "123456789012"

_ID_PREFIX = {
    "aws:ec2/vpc:Vpc": "vpc-",
    "aws:ec2/subnet:Subnet": "subnet-",
    "aws:ec2/internetGateway:InternetGateway": "igw-",
    "aws:ec2/natGateway:NatGateway": "nat-",
    "aws:ec2/eip:Eip": "eipalloc-",
    "aws:ec2/routeTable:RouteTable": "rtb-",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt-",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "sg-",
    "aws:ec2/flowLog:FlowLog": "fl-",
}


def _hex(text: str, length: int = 17) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def stack_config(stack: str, stack_file_text: str | None = None) -> dict[str, str]:
    """The config the engine would hand the program: Pulumi.yaml defaults, then the stack file
    (`Pulumi.<stack>.yaml`, or `stack_file_text`).

    Values are strings, structured ones JSON, exactly as the CLI passes them.
    """
    project = yaml.safe_load((ROOT_DIR / "Pulumi.yaml").read_text())
    stack_file = yaml.safe_load(stack_file_text if stack_file_text is not None
                                else (ROOT_DIR / f"Pulumi.{stack}.yaml").read_text())
    merged: dict[str, Any] = {}
    for key, value in (project.get("config") or {}).items():
        if isinstance(value, dict) and "type" in value:
            if "default" not in value:
                continue
            value = value["default"]
        merged[key if ":" in key else f"{PROJECT}:{key}"] = value
    merged.update(stack_file.get("config") or {})
    return {key: encode_config_value(value) for key, value in merged.items()}


def encode_config_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


@dataclass
class Res:
    urn: str
    type: str
    name: str
    custom: bool
    inputs: dict[str, Any]
    parent: str | None
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    provider: str | None
    protect: bool
    ignore_changes: list[str]
    delete_before_replace: bool
    retain_on_delete: bool = False
    secret_inputs: list[str] = field(default_factory=list)
    """Top-level inputs the engine receives as secrets (encrypted in state)."""
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    """The customTimeouts resource option ({"create": "30m", ...}; only those set)."""
    wire_inputs: dict[str, Any] = field(default_factory=dict, repr=False)
    wire_outputs: dict[str, Any] = field(default_factory=dict, repr=False)
    """The inputs and outputs as they travel to and from the engine (protobuf Struct as JSON:
    secrets, unknowns and resource references in their wire form), for feeding the policy pack
    the way the engine does (tests/policy/engine.py)."""

    @property
    def explicit_dependencies(self) -> set[str]:
        implicit = {u for urns in self.property_dependencies.values() for u in urns}
        return set(self.dependencies) - implicit


@dataclass
class Invoke:
    token: str
    args: dict[str, Any]
    provider: str | None


@dataclass
class Graph:
    stack: str
    resources: list[Res]
    registered_outputs: dict[str, dict[str, Any]]
    invokes: list[Invoke]
    exports: dict[str, Any]
    reads: list[tuple[str, str, str | None]] = field(default_factory=list)
    """(type, id, provider) of every existing resource the program reads."""
    secret_exports: set[str] = field(default_factory=set)
    error: BaseException | None = None
    _by_urn: dict[str, Res] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_urn = {r.urn: r for r in self.resources}

    def by_urn(self, urn: str) -> Res:
        return self._by_urn[urn]

    def of_type(self, type_: str) -> list[Res]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> Res:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {type_} {name or ''}, found {[r.name for r in found]}"
        return found[0]

    def named(self, name: str) -> Res:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, f"expected one resource named {name}, found {len(found)}"
        return found[0]

    def children(self, res: Res) -> list[Res]:
        return [r for r in self.resources if r.parent == res.urn]

    def descendants(self, res: Res) -> list[Res]:
        out: list[Res] = []
        for child in self.children(res):
            out.append(child)
            out.extend(self.descendants(child))
        return out

    def ancestors(self, res: Res) -> list[Res]:
        out = []
        while res.parent and res.parent in self._by_urn:
            res = self._by_urn[res.parent]
            out.append(res)
        return out

    def waits_for(self, res: Res, other: Res) -> bool:
        """Whether the engine creates `other` before `res` (and so deletes `res` first).

        Follows dependencies transitively; depending on a component means depending on all of its
        descendants, as the engine treats it. For a component `other`, waiting for every one of
        its resources counts.
        """
        if not other.custom:
            targets = [d for d in self.descendants(other) if d.custom]
            return bool(targets) and all(self.waits_for(res, t) for t in targets)
        seen: set[str] = set()
        stack = list(res.dependencies)
        while stack:
            urn = stack.pop()
            if urn in seen or urn not in self._by_urn:
                continue
            seen.add(urn)
            if urn == other.urn:
                return True
            dep = self._by_urn[urn]
            stack.extend(dep.dependencies)
            if not dep.custom:
                stack.extend(d.urn for d in self.descendants(dep))
        return False

    def canonical(self) -> str:
        """A stable text form of everything recorded, for determinism checks.

        Registration order is left out: resources register from concurrent tasks, and the engine
        keys state by URN, not by order.
        """
        invokes = sorted(json.dumps(i.__dict__, sort_keys=True) for i in self.invokes)
        wire = ("wire_inputs", "wire_outputs")  # the same values in their wire form
        resources = [{k: v for k, v in r.__dict__.items() if k not in wire}
                     for r in self.resources]
        return json.dumps({
            "resources": sorted(resources, key=lambda r: r["urn"]),
            "outputs": self.registered_outputs,
            "invokes": invokes,
            "exports": self.exports,
            "secretExports": sorted(self.secret_exports),
        }, sort_keys=True, default=str)


def _plain(value: Any) -> Any:
    """Deserialized properties as plain JSON-like data (secrets unwrapped, resources as URNs)."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return _plain(value.get("value"))
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, pulumi.Resource):
        return f"<resource {type(value).__name__}>"
    if isinstance(value, pulumi.FileAsset):
        return {"fileAsset": value.path}
    if isinstance(value, float) and value.is_integer():
        # Properties travel as protobuf doubles; the provider hands Kubernetes integers.
        return int(value)
    return value


def _provider_urn(ref: str) -> str | None:
    return ref.rsplit("::", 1)[0] if ref else None


class AwsMocks(pulumi.runtime.Mocks):
    """Answers like AWS would: ids of the right shape, ARNs, endpoints, issuers."""

    def __init__(self, region: str):
        self.region = region
        self.invokes: list[Invoke] = []
        self._lock = threading.Lock()

    def call(self, args: pulumi.runtime.MockCallArgs):
        with self._lock:
            self.invokes.append(Invoke(args.token, _plain(dict(args.args)),
                                       _provider_urn(args.provider)))
        region = self.region
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{region}{z}" for z in "abcd"]
            return {"id": region, "names": names, "zoneIds": [f"usw2-az{i}" for i in range(1, 5)],
                    "groupNames": [region] * 4, "state": "available"}
        if args.token == "aws:index/getPartition:getPartition":
            return {"id": "aws", "partition": "aws", "dnsSuffix": "amazonaws.com",
                    "reverseDnsPrefix": "com.amazonaws"}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"id": ACCOUNT, "accountId": ACCOUNT, "userId": "AROAEXAMPLE:ci",
                    "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/ci/session"}
        raise NotImplementedError(f"the mocks don't answer invoke {args.token}")

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        typ, name, inputs = args.typ, args.name, dict(args.inputs)
        suffix = _hex(f"{typ}/{name}")
        rid = _ID_PREFIX.get(typ, f"{name}-") + suffix
        region, out = self.region, dict(inputs)
        service = typ.split(":")[1].split("/")[0] if typ.startswith("aws:") else ""
        if typ == "aws:iam/role:Role":
            rid = inputs.get("name") or f"{name}-{suffix[:7]}"
            out.update(name=rid, arn=f"arn:aws:iam::{ACCOUNT}:role/{rid}")
        elif typ == "aws:eks/cluster:Cluster":
            oidc_id = _hex(name, 32).upper()
            rid = inputs["name"]
            out.update(
                arn=f"arn:aws:eks:{region}:{ACCOUNT}:cluster/{rid}",
                endpoint=f"https://{oidc_id}.gr7.{region}.eks.amazonaws.com",
                certificateAuthority={"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="},
                identities=[{"oidcs": [{
                    "issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{oidc_id}"}]}],
                status="ACTIVE", platformVersion="eks.5",
                # The security group EKS creates for the cluster (Karpenter's nodes join it).
                vpcConfig={**inputs.get("vpcConfig", {}),
                           "clusterSecurityGroupId": f"sg-{_hex(name + '-cluster')}"},
            )
        elif typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            host = inputs["url"].removeprefix("https://")
            out.update(arn=f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host}", url=host)
        elif typ == "aws:eks/nodeGroup:NodeGroup":
            group = f"{name}-{suffix[:8]}"
            rid = f"{inputs['clusterName']}:{group}"
            out.update(nodeGroupName=group, status="ACTIVE",
                       arn=f"arn:aws:eks:{region}:{ACCOUNT}:nodegroup/{inputs['clusterName']}/"
                           f"{group}/{suffix}",
                       resources=[{"autoscalingGroups": [{"name": f"eks-{group}-{suffix}"}],
                                   "remoteAccessSecurityGroupId": ""}])
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            out.update(latestVersion=1, defaultVersion=1)
        elif typ == "aws:s3/bucket:Bucket":
            rid = inputs.get("bucket") or f"{inputs.get('bucketPrefix', name)}{suffix[:12]}"
            out.update(bucket=rid, arn=f"arn:aws:s3:::{rid}",
                       bucketRegionalDomainName=f"{rid}.s3.{region}.amazonaws.com")
        elif typ == "aws:kms/key:Key":
            key_id = f"{suffix[:8]}-{suffix[8:12]}-4{suffix[12:15]}-8{suffix[1:4]}-{_hex(name, 12)}"
            rid = key_id
            out.update(keyId=key_id, arn=f"arn:aws:kms:{region}:{ACCOUNT}:key/{key_id}")
        elif typ == "aws:cloudwatch/logGroup:LogGroup":
            out.update(arn=f"arn:aws:logs:{region}:{ACCOUNT}:log-group:{inputs['name']}")
        elif typ == "random:index/randomPassword:RandomPassword":
            out.update(result=f"generated-{_hex(name, 24)}")
        elif typ == "kubernetes:helm.sh/v3:Release":
            out.update(status={"name": inputs["name"], "namespace": inputs.get("namespace"),
                               "chart": inputs["chart"].rsplit("/", 1)[-1],
                               "version": inputs["version"], "revision": 1,
                               "status": "deployed"})
        elif typ == "aws:s3/bucketObjectv2:BucketObjectv2":
            rid = inputs["key"]
            out.update(etag=_hex(inputs["key"], 32), versionId=_hex(name, 32))
        elif typ == "kubernetes:core/v1:Service" and args.resource_id:
            rid = args.resource_id
            namespace, service = rid.split("/", 1)
            out.update(metadata={"name": service, "namespace": namespace},
                       status={"loadBalancer": {"ingress": [{
                           "hostname": f"k8s-istiosys-{service[:9]}-{suffix[:10]}.elb.{region}"
                                       ".amazonaws.com"}]}})
        elif typ.startswith("pulumi:providers:"):
            rid = f"{name}-provider-id"
        if service and "arn" not in out:
            out["arn"] = f"arn:aws:{service}:{region}:{ACCOUNT}:{rid}"
        return rid, out


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, also keeping each request as the engine would have seen it."""

    def __init__(self, mocks: AwsMocks):
        super().__init__(mocks)
        self.records: list[Res] = []
        self.reads: list[tuple[str, str, str | None]] = []
        self.registered_outputs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        raw_inputs = rpc.deserialize_properties(request.object)
        record = Res(
            urn=response.urn,
            type=request.type,
            name=request.name,
            custom=bool(request.custom),
            inputs=_plain(raw_inputs),
            parent=request.parent or None,
            dependencies=sorted(request.dependencies),
            property_dependencies={k: sorted(v.urns)
                                   for k, v in sorted(request.propertyDependencies.items())},
            provider=_provider_urn(request.provider),
            protect=bool(request.protect),
            ignore_changes=sorted(request.ignoreChanges),
            delete_before_replace=bool(request.deleteBeforeReplace),
            retain_on_delete=bool(request.retainOnDelete),
            secret_inputs=sorted(k for k, v in raw_inputs.items() if rpc.is_rpc_secret(v)),
            custom_timeouts={op: getattr(request.customTimeouts, op)
                             for op in ("create", "update", "delete")
                             if getattr(request.customTimeouts, op)},
            wire_inputs=json_format.MessageToDict(request.object),
            wire_outputs=json_format.MessageToDict(response.object),
        )
        with self._lock:
            self.records.append(record)
        return response

    def ReadResource(self, request):  # noqa: N802
        with self._lock:
            self.reads.append((request.type, request.id, _provider_urn(request.provider)))
        return super().ReadResource(request)

    def RegisterResourceOutputs(self, request):  # noqa: N802
        outputs = _plain(rpc.deserialize_properties(request.outputs))
        with self._lock:
            self.registered_outputs[request.urn] = outputs
        return super().RegisterResourceOutputs(request)


def evaluate(stack: str, overrides: Mapping[str, Any] | None = None,
             remove: Iterable[str] = (), *, config: Mapping[str, str] | None = None,
             secret_keys: Iterable[str] = (), stack_file: str | None = None) -> Graph:
    """Run __main__.py for `stack` under mocks and return what it registered.

    `overrides` replaces whole config keys (`mlserve:network` ...) with Python values; `remove`
    drops keys; `secret_keys` are the keys the engine would hold encrypted. A program error is
    returned in `Graph.error`, not raised, so tests can assert that nothing was registered.

    `stack_file` is the text of `Pulumi.<stack>.yaml` as a user wrote it: the program then runs
    from a copy of the project holding that file, and gets the config the engine would make of
    it (a key listed twice: the last one wins, silently).
    """
    if stack_file is not None:
        with tempfile.TemporaryDirectory(prefix="mlserve-project-") as work:
            project = Path(work)
            for entry in ROOT_DIR.iterdir():
                if not entry.name.startswith((".", f"Pulumi.{stack}.yaml")):
                    (project / entry.name).symlink_to(entry)
            (project / f"Pulumi.{stack}.yaml").write_text(stack_file)
            return _evaluate(stack, overrides, remove,
                             config=config if config is not None else
                             stack_config(stack, stack_file_text=stack_file),
                             secret_keys=secret_keys, main=project / "__main__.py")
    return _evaluate(stack, overrides, remove, config=config, secret_keys=secret_keys)


def evaluate_program(main: Path, stack: str, *, config: Mapping[str, str] | None = None,
                     secret_keys: Iterable[str] = ()) -> Graph:
    """Run another Pulumi program (a test's own, at `main`) exactly as `evaluate` runs
    __main__.py: same config, mocks and recording."""
    return _evaluate(stack, None, (), config=config, secret_keys=secret_keys, main=main)


def _evaluate(stack: str, overrides: Mapping[str, Any] | None, remove: Iterable[str], *,
              config: Mapping[str, str] | None, secret_keys: Iterable[str],
              main: Path = ROOT_DIR / "__main__.py") -> Graph:
    values = dict(config if config is not None else stack_config(stack))
    for key in remove:
        values.pop(key, None)
    for key, value in (overrides or {}).items():
        values[key] = encode_config_value(value)
    region = values.get(f"{PROJECT}:region", "us-west-2")
    mocks = AwsMocks(region if isinstance(region, str) else "us-west-2")
    monitor = RecordingMonitor(mocks)

    ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    set_all_config(values, list(secret_keys))
    error: BaseException | None = None
    try:
        _sync_await(run_pulumi_func(
            lambda: runpy.run_path(str(main), run_name="__main__")))
    except Exception as exc:  # noqa: BLE001 - handed to the test
        error = exc
    exports: dict[str, Any] = {}
    secret_exports: set[str] = set()
    root = get_root_resource()
    if error is None and root is not None:
        for key, value in dict(getattr(root, "outputs", {})).items():
            output = pulumi.Output.from_input(value)
            exports[key] = _plain(_sync_await(output.future(with_unknowns=True)))
            if _sync_await(output.is_secret()):
                secret_exports.add(key)
    return Graph(stack=stack, resources=list(monitor.records), registered_outputs=monitor.registered_outputs,
                 invokes=list(mocks.invokes), exports=exports, secret_exports=secret_exports,
                 reads=list(monitor.reads), error=error)


def set_path(config: Mapping[str, str], path: str, value: Any) -> dict[str, str]:
    """`pulumi config set --path <path> <value>` on an engine-style config mapping.

    `path` is relative to the mlserve namespace, e.g. `gpuNodeGroups[0].maxSize`.
    """
    parts: list[str | int] = []
    for token in path.replace("]", "").replace("[", ".").split("."):
        parts.append(int(token) if token.isdigit() else token)
    top = f"{PROJECT}:{parts[0]}"
    result = dict(config)
    if len(parts) == 1:
        result[top] = encode_config_value(value)
        return result
    current = result.get(top)
    root: Any = json.loads(current) if current is not None else ({} if isinstance(parts[1], str)
                                                                  else [])
    node = root
    for part, following in zip(parts[1:-1], parts[2:], strict=True):
        if isinstance(node, dict):
            node = node.setdefault(part, {} if isinstance(following, str) else [])
        else:
            node = node[part]
    last = parts[-1]
    if isinstance(node, list) and isinstance(last, int) and last == len(node):
        node.append(value)  # as the CLI does for the next index of a list
    else:
        node[last] = value
    result[top] = json.dumps(root)
    return result


def missing_tool(message: str) -> None:
    """A test whose tool (unpacked by `make test`) is absent: skipped on a workstation, a failure
    in CI (`CI` set, as CI services and .ci/run's callers do), where it would otherwise pass
    without having run."""
    import os

    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run this test")
    pytest.skip(message)
