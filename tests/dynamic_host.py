"""Pulumi's dynamic-provider host, started and driven the way the engine does it.

pulumi 3.272.0: the engine starts `python -u -m pulumi.dynamic` from the project directory, in
the project's virtualenv (sdk/python/dist/pulumi-resource-pulumi-python), reads the gRPC port it
prints (sdk/python/lib/pulumi/dynamic/__main__.py:267, `main`), calls Configure, then
Check/Create/Read/Diff/Update/Delete with the resource's properties, each carrying `__provider`:
the provider object the program pickled with dill (sdk/python/lib/pulumi/dynamic/dynamic.py:279,
`serialize_provider`). The host answers Configure with acceptSecrets false (__main__.py:214), so
the engine sends secret values in plain (pkg/resource/plugin/provider_plugin.go, `Check`:
`KeepSecrets: protocol.acceptSecrets`). A provider exception comes back as gRPC status UNKNOWN
whose details are the traceback (__main__.py:81, `_abort_with_traceback`); the engine shows it,
last line last.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import struct_pb2
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from tests.harness import ROOT_DIR


def _struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    # A loop of its own: asyncio.run would clear the thread's loop, which the harness uses.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(rpc.serialize_properties(dict(props), {}))
    finally:
        loop.close()


def _props(struct: struct_pb2.Struct) -> dict[str, Any]:
    return rpc.deserialize_properties(struct)


class ProviderError(Exception):
    """A provider method failed; the message is the last line the engine would show."""


class DynamicProviderHost:
    def __init__(self, python: str, env: Mapping[str, str] | None = None):
        self.python = python
        self.env = {**os.environ, **(env or {})}

    def __enter__(self) -> DynamicProviderHost:
        self.process = subprocess.Popen([self.python, "-u", "-m", "pulumi.dynamic"],
                                        cwd=ROOT_DIR, env=self.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
        line = self.process.stdout.readline().decode().strip()
        if not line.isdigit():
            self.process.kill()
            raise RuntimeError(f"the dynamic provider host did not start: {line!r} "
                               f"{self.process.stderr.read().decode()[-2000:]}")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)
        answer = self.stub.Configure(provider_pb2.ConfigureRequest(
            args=struct_pb2.Struct(), acceptSecrets=True, acceptResources=True), timeout=60)
        assert answer.acceptSecrets is False
        return self

    def __exit__(self, *_: Any) -> None:
        self.channel.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=120)
        except grpc.RpcError as exc:
            details = (exc.details() or "").strip().splitlines()
            raise ProviderError(details[-1] if details else str(exc)) from None

    def check(self, urn: str, news: Mapping[str, Any],
              olds: Mapping[str, Any] | None = None) -> dict[str, Any]:
        answer = self._call("Check", provider_pb2.CheckRequest(
            urn=urn, olds=_struct(olds or {}), news=_struct(news)))
        assert not answer.failures, answer.failures
        return _props(answer.inputs)

    def create(self, urn: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        answer = self._call("Create", provider_pb2.CreateRequest(
            urn=urn, properties=_struct(inputs), timeout=300))
        return answer.id, _props(answer.properties)

    def read(self, id_: str, urn: str, outs: Mapping[str, Any],
             inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        answer = self._call("Read", provider_pb2.ReadRequest(
            id=id_, urn=urn, properties=_struct(outs), inputs=_struct(inputs)))
        return answer.id, _props(answer.properties)

    def diff(self, id_: str, urn: str, olds: Mapping[str, Any],
             news: Mapping[str, Any]) -> Any:
        return self._call("Diff", provider_pb2.DiffRequest(
            id=id_, urn=urn, olds=_struct(olds), news=_struct(news)))

    def update(self, id_: str, urn: str, olds: Mapping[str, Any],
               news: Mapping[str, Any]) -> dict[str, Any]:
        answer = self._call("Update", provider_pb2.UpdateRequest(
            id=id_, urn=urn, olds=_struct(olds), news=_struct(news), timeout=300))
        return _props(answer.properties)

    def delete(self, id_: str, urn: str, outs: Mapping[str, Any]) -> None:
        self._call("Delete", provider_pb2.DeleteRequest(id=id_, urn=urn,
                                                        properties=_struct(outs)))


# ---- the model-version provider (components/model_upload.py) through the host ---------------


def model_version_lifecycle(host: DynamicProviderHost, s3: Any,
                            resources: Mapping[str, list[dict[str, Any]]]) -> None:
    """What `pulumi up`, `refresh`, a changed input and `destroy` do to the upload resources of
    the s3Compatible and existing-bucket stacks, and to a pinned version's check, against a real
    S3 API (`s3`: a client of the same server, to look and to tamper)."""
    for kind in ("s3Compatible", "existing"):
        (resource,) = resources[kind]
        urn, inputs = resource["urn"], resource["inputs"]
        assert inputs["action"] == "publish" and inputs["__provider"]
        bucket, prefix, version = inputs["bucket"], inputs["prefix"], inputs["version"]
        checked = host.check(urn, inputs)
        id_, outs = host.create(urn, checked)
        assert id_ == f"{bucket}/{prefix}/{version}"
        listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
        assert f"{prefix}/manifests/{version}.json" in listed
        files = [k for k in listed if k.startswith(f"{prefix}/{version}/cifar10/")]
        assert len(files) == len(listed) - 1
        assert host.read(id_, urn, outs, checked)[0] == id_
        assert host.diff(id_, urn, outs, checked).changes == provider_pb2.DiffResponse.DIFF_NONE
        moved = host.diff(id_, urn, outs, {**checked, "version": "0" * 20})
        assert moved.changes == provider_pb2.DiffResponse.DIFF_SOME
        assert list(moved.replaces) == ["version"]
        # Altered behind the stack's back: refresh drops it, the next up publishes it again.
        s3.put_object(Bucket=bucket, Key=files[0], Body=b"tampered")
        assert host.read(id_, urn, outs, checked)[0] == ""
        host.update(id_, urn, outs, checked)
        assert host.read(id_, urn, outs, checked)[0] == id_
        host.delete(id_, urn, outs)  # versions are immutable and may be pinned elsewhere
        assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == listed
        try:
            host.create(urn, {**checked, "version": "0" * 20})
        except ProviderError as exc:
            assert "cifar10 changed since the preview" in str(exc), exc
        else:
            raise AssertionError("a version the folder doesn't hash to was published")
    (pin,) = resources["pinned"]
    checked = host.check(pin["urn"], pin["inputs"])
    assert checked["action"] == "verify"
    assert host.create(pin["urn"], checked)[0]  # published above: there and intact
    try:
        host.create(pin["urn"], {**checked, "version": "f" * 20})
    except ProviderError as exc:
        assert (f"mlserve:modelServing.models.cifar10.version: {'f' * 20} is pinned but not in "
                f"s3://{checked['bucket']}/{checked['prefix']}/{'f' * 20}") in str(exc), exc
        assert "never uploaded" in str(exc)
    else:
        raise AssertionError("a missing pinned version passed the check")
