"""The Triton model repository: validated in full, then each model uploaded under its own version.

Keys are s3://<bucket>/<prefix>/<model version>/<model>/... (modelrepo/registry.py), where a model's
version is the content hash of its own files: changing one model gives that model a new,
immutable prefix and leaves every other model's keys, and its model servers, untouched. The same
files give the same keys (a clean preview). Objects of earlier versions are retained when a
version moves on, so rolling back is pointing back.

What is uploaded: every version a model plan serves from the repository folder (a model, or its
canary, without a pinned `version`). A pinned version is never uploaded from the folder: it must
already be in the bucket (promoted with `python -m tools.promote` or published with `python -m
tools.models publish`), and the stack checks that it is there and intact before any model server
is pointed at it (components/model_upload.py, PinnedModelVersions).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pulumi
import pulumi_aws as aws

from components.config.bucket import ModelRepositoryConfig
from components.config.errors import ConfigError, Key, Problem, where
from components.config.stack import StackConfig
from modelrepo import repository as triton_repository
from modelrepo.layout import manifest_key, object_key, version_uri
from modelrepo.registry import manifest_body, manifest_for
from modelrepo.repository import Repository, RepositoryError

if TYPE_CHECKING:
    from components.model_plan import ModelPlan

VersionRef = tuple[str, str]
"""(model, version)."""


class ModelRepositoryError(ConfigError):
    """A repository Triton would refuse: `pulumi up` stops before anything is registered. Lists
    every problem, each located at its file or its `mlserve:` key."""

    heading = "invalid model repository"


def load_model_repository(config: ModelRepositoryConfig, project_root: Path) -> Repository:
    """Validate (layout and Triton's protobuf) and hash the repository, or raise with every
    problem at once."""
    root = project_root / config.path
    if not root.is_dir():
        raise ModelRepositoryError([(("modelRepository", "path"), f"{config.path!r} is not a "
                                     "folder of the project (no model repository there)")])
    try:
        return triton_repository.load(root)
    except RepositoryError as exc:
        raise ModelRepositoryError(exc.located) from None


@dataclass(frozen=True)
class ModelVersions:
    """Where every version the stack serves comes from."""

    uploads: dict[str, str]
    """model -> its version in the repository folder: uploaded by the stack."""
    pinned: dict[VersionRef, str]
    """(model, version) -> the `mlserve:` key pinning it: must already be in the bucket."""


def model_versions(config: StackConfig, repository: Repository,
                   plans: Sequence[ModelPlan]) -> ModelVersions:
    """Sort every served version (stable and canary) into uploaded-from-the-folder or pinned."""
    uploads: dict[str, str] = {}
    pinned: dict[VersionRef, str] = {}
    problems: list[Problem] = []
    for plan in plans:
        settings = config.model_serving.models.get(plan.name)
        key: Key = ("modelServing", "models", plan.name)
        canary = settings.canary if settings is not None else None
        folder = repository.models[plan.name].content_hash
        for version, pin, pin_key in (
                (plan.version, settings.version if settings else None, (*key, "version")),
                (plan.canary_version, canary.version if canary else None,
                 (*key, "canary", "version"))):
            if version is None:
                continue
            if pin is not None and pin == version:
                pinned.setdefault((plan.name, version), where(pin_key))
            elif pin is None and version == folder:
                uploads[plan.name] = folder
            else:
                problems.append((pin_key, f"the plan serves {version}, which is neither its "
                                 f"pinned version ({pin}) nor the folder's ({folder})"))
    if problems:
        raise ModelRepositoryError(problems)
    return ModelVersions(uploads=uploads, pinned=pinned)


def storage_uris(plans: Sequence[ModelPlan],
                 ready: Mapping[VersionRef, pulumi.Output[str]]) -> dict[str, pulumi.Output[str]]:
    """model -> the storage URI of the version it serves (stable track), known once that
    version's objects are uploaded or verified."""
    return {plan.name: ready[(plan.name, plan.version)] for plan in plans}


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
    models: Sequence[str]
    """The models whose folder version is uploaded (`ModelVersions.uploads`)."""
    bucket_ready: Sequence[pulumi.Resource] = field(default_factory=list)
    """The bucket's encryption, public-access block and policy: objects are written only after
    them, so none is ever stored under weaker settings."""


class ModelRepository(pulumi.ComponentResource):
    """The folder's model versions as objects of the stack's own bucket."""

    def __init__(self, name: str, args: ModelRepositoryArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlserve:model_repository:ModelRepository", name, None, opts)
        repo = args.repository
        self.versions = {model: repo.models[model].content_hash for model in sorted(args.models)}
        self.objects: list[aws.s3.BucketObjectv2] = []
        self.ready: dict[VersionRef, pulumi.Output[str]] = {}
        for model, version in self.versions.items():
            files = [
                aws.s3.BucketObjectv2(
                    f"{name}-{version}-{relative}",
                    bucket=args.bucket,
                    key=object_key(args.prefix, version, relative),
                    # Relative to the project, so state doesn't depend on where it was checked
                    # out.
                    source=pulumi.FileAsset(os.path.relpath(repo.root / relative)),
                    content_type=content_type(relative),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.bucket_ready),
                                                retain_on_delete=True),
                )
                for relative in repo.models[model].files
            ]
            # The manifest (every file's size and SHA-256) goes last: a version without one is
            # incomplete, and promotion verifies copies against it.
            manifest = aws.s3.BucketObjectv2(
                f"{name}-{version}-manifest",
                bucket=args.bucket,
                key=manifest_key(args.prefix, version),
                content=manifest_body(manifest_for(repo, model)).decode(),
                content_type="application/json",
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(files),
                                            retain_on_delete=True))
            self.objects += [*files, manifest]
            # Consumers (InferenceServices) wait for the manifest, so for every object.
            self.ready[(model, version)] = pulumi.Output.all(args.bucket, manifest.id).apply(
                functools.partial(_uri_of, prefix=args.prefix, version=version))
        self.register_outputs({"versions": self.versions,
                               "storageUris": {model: self.ready[(model, version)]
                                               for model, version in self.versions.items()}})


def _uri_of(bucket_and_manifest: list[str], *, prefix: str, version: str) -> str:
    """A version's URI, once its manifest (the last object written) exists."""
    return version_uri(bucket_and_manifest[0], prefix, version)
