"""Model versions in a bucket, handled by boto3 from a Pulumi dynamic provider:

- ModelUpload publishes the folder's model versions to a bucket the stack doesn't manage as AWS
  resources (an existing S3 bucket, or an S3-compatible server such as MinIO), exactly as
  `python -m tools.models publish` does: files under the model's version, verified, manifest last.
- PinnedModelVersions checks, in any bucket, that each pinned version is there and intact (its
  manifest hashes to the version, every object's bytes match): a pinned version is never uploaded,
  so a missing one stops `pulumi up` with the key that pins it, before a model server is pointed
  at nothing.

How the engine runs this code (pulumi 3.272.0): `pulumi.dynamic.Resource` pickles the provider
object with dill into the `__provider` input (sdk/python/lib/pulumi/dynamic/dynamic.py:318 and
:375); the engine starts the dynamic provider host `python -u -m pulumi.dynamic` from the
project directory, in the project's virtualenv (sdk/python/dist/pulumi-resource-pulumi-python
resolves `virtualenv: .venv` against $PWD), and calls Check/Create/Read/Diff/Update/Delete on it
over gRPC; the host unpickles the provider from `__provider` (sdk/python/lib/pulumi/dynamic/
__main__.py:46, `get_provider`). dill pickles `_Publisher` by reference, so the host imports this
module, modelrepo.registry and boto3: all of them must come from requirements.txt, the only file a
plain `pulumi up` installs (tests/test_requirements.py builds a venv from it alone and drives
this entry point).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from modelrepo.repository import Repository

PUBLISH, VERIFY = "publish", "verify"


class _Publisher(ResourceProvider):
    """create/update publish the model version (idempotent) or, for a pinned one, verify it;
    read (`pulumi refresh`) reports a version whose objects are gone or altered as deleted, so
    the next `up` publishes (or checks) it again; delete keeps it (versions are immutable and may
    be pinned elsewhere)."""

    @staticmethod
    def _client(props: dict[str, Any]) -> Any:
        from modelrepo.registry import s3_client

        return s3_client(endpoint_url=props.get("endpoint"), region=props.get("region"),
                         access_key_id=props.get("access_key_id"),
                         secret_access_key=props.get("secret_access_key"))

    def _apply(self, props: dict[str, Any]) -> dict[str, Any]:
        from modelrepo.layout import version_uri
        from modelrepo.registry import MissingVersion, RegistryError, check_version

        client = self._client(props)
        if props["action"] == VERIFY:
            where = version_uri(props["bucket"], props["prefix"], props["version"])
            try:
                check_version(client, props["bucket"], props["prefix"], props["version"],
                              props["model"])
            except MissingVersion as exc:
                raise RegistryError(f"{props['config_key']}: {props['version']} is pinned but "
                                    f"not in {where} ({exc}); a pinned version is never "
                                    "uploaded: promote it (.venv/bin/python -m tools.promote) or "
                                    "publish it (.venv/bin/python -m tools.models publish) "
                                    "first") from None
            except RegistryError as exc:
                raise RegistryError(f"{props['config_key']}: pinned {props['version']}: {exc}"
                                    ) from None
            return props
        from pathlib import Path

        from modelrepo import repository
        from modelrepo.registry import publish_model

        repo = repository.load(Path(props["root"]))
        found = repo.models.get(props["model"])
        if found is None or found.content_hash != props["version"]:
            raise RegistryError(f"{props['root']}/{props['model']} changed since the preview: "
                                f"version {found.content_hash if found else 'none'}, expected "
                                f"{props['version']}")
        publish_model(client, repo, props["model"], props["bucket"], props["prefix"])
        return props

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        from modelrepo.registry import MissingVersion, read_manifest, verify

        client = self._client(props)
        try:
            manifest = read_manifest(client, props["bucket"], props["prefix"], props["version"])
        except MissingVersion:
            return ReadResult(id_=None, outs={})
        # Any other error (access denied, no such bucket) fails the refresh instead.
        if verify(client, props["bucket"], props["prefix"], manifest):
            return ReadResult(id_=None, outs={})
        return ReadResult(id_=id_, outs=props)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"{props['bucket']}/{props['prefix']}/{props['version']}",
                            outs=self._apply(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("action", "model", "bucket", "prefix", "version", "endpoint")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._apply(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class _Version(pulumi.dynamic.Resource):
    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions):
        super().__init__(_Publisher(), name, props, opts)


@dataclass
class BucketAccess:
    """How boto3 reaches the bucket from the machine running `pulumi up`."""

    bucket: pulumi.Input[str]
    prefix: str
    region: str
    endpoint: str | None = None
    """An S3-compatible endpoint; None for S3 itself (then the ambient AWS credentials)."""
    access_key_id: pulumi.Input[str] | None = None
    secret_access_key: pulumi.Input[str] | None = None

    def props(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket, "prefix": self.prefix, "region": self.region,
            "endpoint": self.endpoint,
            "access_key_id": pulumi.Output.secret(self.access_key_id)
            if self.access_key_id is not None else None,
            "secret_access_key": pulumi.Output.secret(self.secret_access_key)
            if self.secret_access_key is not None else None,
        }

    def uri(self, version: str) -> pulumi.Output[str]:
        from modelrepo.layout import version_uri

        return pulumi.Output.from_input(self.bucket).apply(
            lambda bucket: version_uri(bucket, self.prefix, version))


def _model_version(parent: pulumi.Resource, name: str, model: str, version: str,
                   props: dict[str, Any], access: BucketAccess,
                   depends_on: Sequence[pulumi.Resource]) -> pulumi.Output[str]:
    """One model version's dynamic resource; returns its URI, known once the resource is done."""
    resource = _Version(f"{name}-{model}-{version}",
                        {**props, "model": model, "version": version, **access.props()},
                        pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)))
    return pulumi.Output.all(access.uri(version), resource.id).apply(lambda values: values[0])


@dataclass
class ModelUploadArgs:
    repository: Repository
    models: Sequence[str]
    """The models whose folder version is uploaded (`ModelVersions.uploads`)."""
    access: BucketAccess
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class ModelUpload(pulumi.ComponentResource):
    def __init__(self, name: str, args: ModelUploadArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:model_upload:ModelUpload", name, None, opts)
        repo = args.repository
        # Relative to the project (the provider host runs there), so state doesn't depend on
        # where it was checked out.
        root = os.path.relpath(repo.root)
        self.versions = {model: repo.models[model].content_hash for model in sorted(args.models)}
        self.ready: dict[tuple[str, str], pulumi.Output[str]] = {}
        for model, version in self.versions.items():
            self.ready[(model, version)] = _model_version(
                self, name, model, version, {"action": PUBLISH, "root": root}, args.access,
                args.depends_on)
        self.register_outputs({"versions": self.versions,
                               "storageUris": {model: self.ready[(model, version)]
                                               for model, version in self.versions.items()}})


@dataclass
class PinnedModelVersionsArgs:
    pinned: Mapping[tuple[str, str], str]
    """(model, version) -> the `mlserve:` key that pins it (`ModelVersions.pinned`)."""
    access: BucketAccess
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class PinnedModelVersions(pulumi.ComponentResource):
    def __init__(self, name: str, args: PinnedModelVersionsArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:model_upload:PinnedModelVersions", name, None, opts)
        self.ready: dict[tuple[str, str], pulumi.Output[str]] = {}
        for (model, version), key in sorted(args.pinned.items()):
            self.ready[(model, version)] = _model_version(
                self, name, model, version, {"action": VERIFY, "config_key": key}, args.access,
                args.depends_on)
        self.register_outputs({"pinned": {f"{model}@{version}": key
                                          for (model, version), key in args.pinned.items()}})
