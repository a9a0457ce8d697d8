"""Runs the policy pack the way `pulumi preview --policy-pack policy` does, minus the engine.

The engine starts a Python pack as `python -u -m pulumi.policy <engine address> <pack dir>` in
the pack's own virtualenv, with the pack directory as working directory and the stack's config
in PULUMI_CONFIG (pulumi sdk/python/cmd/pulumi-language-python/main.go, RunPlugin), reads the
gRPC port the pack prints, and calls its Analyzer service: `Analyze` once per resource with its
inputs, `AnalyzeStack` once with every resource's outputs (pkg/resource/deploy/step_generator.go:
"AnalyzeStack is called on the final outputs of each resource"). Properties are marshalled with
KeepUnknowns, KeepSecrets and SkipInternalKeys, and resource references become their ID or URN
(pkg/resource/plugin/analyzer_plugin.go, rpc.go MarshalPropertyValue).

This module is that engine side: it starts the real pack in policy/venv, with the real
pulumi-policy (its gRPC servicer, its deserializer, its read-only property proxies), and feeds it
the graph recorded under the mocks (tests/harness.py keeps each resource's inputs and outputs in
their wire form) over a real gRPC channel.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2
from pulumi.runtime import rpc
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from tests.harness import ROOT_DIR, Graph, Res

POLICY_DIR = ROOT_DIR / "policy"
POLICY_PYTHON = POLICY_DIR / "venv" / "bin" / "python"

SIG = rpc._special_sig_key
SECRET_SIG = rpc._special_secret_sig
RESOURCE_SIG = rpc._special_resource_sig
OUTPUT_SIG = rpc._special_output_value_sig
UNKNOWN = rpc.UNKNOWN


def ensure_policy_venv() -> Path:
    """policy/venv as `make policy-venv` builds it (`make test` does that first)."""
    stamp = POLICY_DIR / "venv" / ".installed"
    requirements = POLICY_DIR / "requirements.txt"
    if not stamp.exists() or stamp.stat().st_mtime < requirements.stat().st_mtime:
        subprocess.run(["make", "-s", "policy-venv", f"PYTHON={sys.executable}"], cwd=ROOT_DIR,
                       check=True, timeout=900)
    return POLICY_PYTHON


# ---- the engine's marshalling ----------------------------------------------------------------

def engine_value(value: Any) -> Any:
    """A property as the SDK sent it (wire form) -> as the engine marshals it for an analyzer."""
    if isinstance(value, Mapping):
        sig = value.get(SIG)
        if sig == SECRET_SIG:  # KeepSecrets
            return {SIG: SECRET_SIG, "value": engine_value(value.get("value"))}
        if sig == RESOURCE_SIG:  # KeepResources is false: the ID, else the URN
            return value.get("id") or value.get("urn")
        if sig == OUTPUT_SIG:  # KeepOutputValues is false
            inner = engine_value(value["value"]) if "value" in value else UNKNOWN
            return {SIG: SECRET_SIG, "value": inner} if value.get("secret") else inner
        return {k: engine_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [engine_value(v) for v in value]
    return value  # unknowns stay the string sentinel (KeepUnknowns)


def engine_struct(properties: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    # SkipInternalKeys: top-level keys starting with "__" are the engine's own.
    struct.update({k: engine_value(v) for k, v in properties.items() if not k.startswith("__")})
    return struct


@dataclass
class Resource:
    """What the engine knows of one resource: from the recorded graph, or written by hand."""

    type: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None = None
    urn: str = ""
    name: str = "r"
    protect: bool = False
    parent: str = ""
    provider: Resource | None = None
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.urn:
            self.urn = f"urn:pulumi:test::mlserve::{self.type}::{self.name}"
        if self.outputs is None:
            self.outputs = self.inputs


def from_graph(graph: Graph) -> list[Resource]:
    """Every resource of a recorded graph, with its provider, as the engine holds them."""
    by_urn: dict[str, Resource] = {}
    for res in graph.resources:
        by_urn[res.urn] = _resource(res)
    for res in graph.resources:
        if res.provider and res.provider in by_urn:
            by_urn[res.urn].provider = by_urn[res.provider]
    return list(by_urn.values())


def _resource(res: Res) -> Resource:
    # Copies: tests change them, and recorded graphs are shared between tests.
    return Resource(type=res.type, inputs=copy.deepcopy(res.wire_inputs),
                    outputs=copy.deepcopy(res.wire_outputs),
                    urn=res.urn, name=res.name, protect=res.protect, parent=res.parent or "",
                    dependencies=list(res.dependencies),
                    property_dependencies=dict(res.property_dependencies))


def _options(resource: Resource) -> analyzer_pb2.AnalyzerResourceOptions:
    return analyzer_pb2.AnalyzerResourceOptions(protect=resource.protect, parent=resource.parent)


def _provider(resource: Resource) -> analyzer_pb2.AnalyzerProviderResource | None:
    provider = resource.provider
    if provider is None:
        return None
    return analyzer_pb2.AnalyzerProviderResource(
        type=provider.type, urn=provider.urn, name=provider.name,
        properties=engine_struct(provider.inputs))


def analyze_request(resource: Resource) -> analyzer_pb2.AnalyzeRequest:
    return analyzer_pb2.AnalyzeRequest(
        type=resource.type, urn=resource.urn, name=resource.name,
        properties=engine_struct(resource.inputs), options=_options(resource),
        provider=_provider(resource))


def analyze_stack_request(resources: Iterable[Resource]) -> analyzer_pb2.AnalyzeStackRequest:
    return analyzer_pb2.AnalyzeStackRequest(resources=[
        analyzer_pb2.AnalyzerResource(
            type=r.type, urn=r.urn, name=r.name, properties=engine_struct(r.outputs or {}),
            options=_options(r), provider=_provider(r), parent=r.parent,
            dependencies=r.dependencies,
            propertyDependencies={
                k: analyzer_pb2.AnalyzerPropertyDependencies(urns=v)
                for k, v in r.property_dependencies.items() if v})
        for r in resources])


# ---- the pack, as a process --------------------------------------------------------------------

@dataclass(frozen=True)
class Diagnostic:
    policy: str
    message: str
    urn: str
    mandatory: bool

    def __str__(self) -> str:
        return f"{self.policy}: {self.message}"


class PolicyPack:
    """The pack in its own process and virtualenv, reached over gRPC like the engine does."""

    def __init__(self, config: Mapping[str, str] | None = None, stack: str = "test",
                 pack_dir: Path = POLICY_DIR):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
        if config is not None:
            # What the language host hands a pack: the stack, and its config as JSON.
            env.update(PULUMI_CONFIG=json.dumps(dict(config)), PULUMI_PROJECT="mlserve",
                       PULUMI_STACK=stack, PULUMI_DRY_RUN="true")
        self._process = subprocess.Popen(
            [str(ensure_policy_venv()), "-u", "-m", "pulumi.policy", "127.0.0.1:0", "."],
            cwd=pack_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        port = self._process.stdout.readline().strip()
        if not port.isdigit():
            self.close()
            raise RuntimeError(f"the policy pack did not start: {port!r}\n"
                               f"{self._process.stderr.read()}")
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self._stub = analyzer_pb2_grpc.AnalyzerStub(self._channel)

    def __enter__(self) -> PolicyPack:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "_channel", None) is not None:
            self._channel.close()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        for stream in (self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()

    def info(self) -> analyzer_pb2.AnalyzerInfo:
        from google.protobuf import empty_pb2

        return self._stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=60)

    @staticmethod
    def _diagnostics(response: Any) -> list[Diagnostic]:
        return [Diagnostic(d.policyName, d.message.split("\n", 1)[-1], d.urn,
                           d.enforcementLevel == analyzer_pb2.MANDATORY)
                for d in response.diagnostics]

    def analyze(self, resource: Resource) -> list[Diagnostic]:
        return self._diagnostics(self._stub.Analyze(analyze_request(resource), timeout=60))

    def analyze_stack(self, resources: Iterable[Resource]) -> list[Diagnostic]:
        return self._diagnostics(self._stub.AnalyzeStack(analyze_stack_request(resources),
                                                         timeout=120))

    def check(self, resources: list[Resource]) -> list[Diagnostic]:
        """Everything the engine would report for these resources: each one, then the stack."""
        found = [d for r in resources for d in self.analyze(r)]
        return found + self.analyze_stack(resources)
