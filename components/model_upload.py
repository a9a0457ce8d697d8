"""The model repository uploaded to a bucket the stack doesn't manage as AWS resources: an
existing S3 bucket or an S3-compatible server (MinIO). A dynamic resource runs the same
publish as `python -m tools.models publish`: files under the content hash, manifest last."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from tools.models.repository import Repository


class _Publisher(ResourceProvider):
    """create/update publish the version (idempotent); read (`pulumi refresh`) reports a
    version whose objects are gone or altered as deleted, so the next `up` publishes it again;
    delete keeps it (versions are immutable and may be pinned elsewhere)."""

    @staticmethod
    def _client(props: dict[str, Any]) -> Any:
        from tools.registry import s3_client

        return s3_client(endpoint_url=props.get("endpoint"), region=props.get("region"),
                         access_key_id=props.get("access_key_id"),
                         secret_access_key=props.get("secret_access_key"))

    def _publish(self, props: dict[str, Any]) -> dict[str, Any]:
        from pathlib import Path

        from tools.models import repository
        from tools.registry import publish

        repo = repository.load(Path(props["root"]))
        if repo.content_hash != props["version"]:
            raise RuntimeError(f"{props['root']} changed since the preview: hash "
                               f"{repo.content_hash}, expected {props['version']}")
        publish(self._client(props), repo, props["bucket"], props["prefix"])
        return props

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        from tools.registry import MissingVersion, read_manifest, verify

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
                            outs=self._publish(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("bucket", "prefix", "version", "endpoint")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._publish(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class _Version(pulumi.dynamic.Resource):
    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions):
        super().__init__(_Publisher(), name, props, opts)


@dataclass
class ModelUploadArgs:
    repository: Repository
    bucket: str
    prefix: str
    region: str
    endpoint: str | None = None
    """An S3-compatible endpoint; None for S3 itself (then the ambient AWS credentials)."""
    access_key_id: pulumi.Input[str] | None = None
    secret_access_key: pulumi.Input[str] | None = None
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class ModelUpload(pulumi.ComponentResource):
    def __init__(self, name: str, args: ModelUploadArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:model_upload:ModelUpload", name, None, opts)
        digest = args.repository.content_hash
        version = _Version(f"{name}-{digest}", {
            "root": str(args.repository.root),
            "version": digest,
            "bucket": args.bucket,
            "prefix": args.prefix,
            "region": args.region,
            "endpoint": args.endpoint,
            "access_key_id": pulumi.Output.secret(args.access_key_id)
            if args.access_key_id is not None else None,
            "secret_access_key": pulumi.Output.secret(args.secret_access_key)
            if args.secret_access_key is not None else None,
        }, pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)))
        self.content_hash = digest
        self.storage_uri = f"s3://{args.bucket}/{args.prefix}/{digest}"
        self.uploaded: pulumi.Output[str] = version.id.apply(lambda _: self.storage_uri)
        self.register_outputs({"storageUri": self.uploaded, "contentHash": digest})
