"""The Triton model repository, uploaded content-addressed to the model bucket.

Keys are s3://<bucket>/<prefix>/<content hash>/<model>/...: the same files give the same keys (a
clean preview), any change gives a new, immutable prefix. Objects of earlier hashes are retained
when the hash moves on, so rolling back is pointing back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws

from components.config import ModelRepositoryConfig
from tools.models import repository as triton_repository
from tools.models.repository import Repository, RepositoryError
from tools.registry import manifest_body, manifest_for, manifest_key, object_key


class ModelRepositoryError(pulumi.RunError):
    """A repository Triton would refuse: `pulumi up` stops before anything is registered."""


def load_model_repository(config: ModelRepositoryConfig, project_root: Path) -> Repository:
    """Validate (layout and Triton's protobuf) and hash the repository, or raise."""
    try:
        return triton_repository.load(project_root / config.path)
    except RepositoryError as exc:
        raise ModelRepositoryError(str(exc)) from None


# Fixed, not guessed from the machine's MIME database: the same files must give the same inputs.
CONTENT_TYPES = {".pbtxt": "text/plain", ".txt": "text/plain", ".json": "application/json",
                 ".py": "text/x-python"}


def content_type(relative: str) -> str:
    return CONTENT_TYPES.get(Path(relative).suffix, "application/octet-stream")


@dataclass
class ModelRepositoryArgs:
    repository: Repository
    bucket: pulumi.Input[str]
    prefix: str
    bucket_ready: Sequence[pulumi.Resource] = field(default_factory=list)
    """The bucket's encryption, public-access block and policy: objects are written only after
    them, so none is ever stored under weaker settings."""
    pinned_version: str | None = None
    """A version already in the bucket (published or promoted): served as is, nothing uploaded."""


class ModelRepository(pulumi.ComponentResource):
    def __init__(self, name: str, args: ModelRepositoryArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:model_repository:ModelRepository", name, None, opts)
        repo = args.repository
        digest = args.pinned_version or repo.content_hash
        files = [] if args.pinned_version else repo.files
        self.objects = [
            aws.s3.BucketObjectv2(
                f"{name}-{digest}-{relative}",
                bucket=args.bucket,
                key=object_key(args.prefix, digest, relative),
                # Relative to the project, so state doesn't depend on where it was checked out.
                source=pulumi.FileAsset(os.path.relpath(repo.root / relative)),
                content_type=content_type(relative),
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.bucket_ready),
                                            retain_on_delete=True),
            )
            for relative in files
        ]
        if self.objects:
            # The manifest (every file's size and SHA-256) goes last: a version without one is
            # incomplete, and promotion verifies copies against it.
            self.objects.append(aws.s3.BucketObjectv2(
                f"{name}-{digest}-manifest",
                bucket=args.bucket,
                key=manifest_key(args.prefix, digest),
                content=manifest_body(manifest_for(repo)).decode(),
                content_type="application/json",
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.objects),
                                            retain_on_delete=True)))
        self.content_hash = digest
        self.storage_uri: pulumi.Output[str] = pulumi.Output.concat(
            "s3://", args.bucket, f"/{args.prefix}/{digest}")
        # Consumers (InferenceServices) wait for every object, not just for the URI.
        self.uploaded: pulumi.Output[str] = pulumi.Output.all(
            self.storage_uri, *[o.id for o in self.objects]).apply(lambda v: v[0])
        self.register_outputs({"storageUri": self.uploaded, "contentHash": digest,
                               "models": sorted(repo.models)})
