"""Model versions in S3: publish a repository under its content hash, and copy a version from one
bucket to another with every object verified.

A version is `<prefix>/<hash>/<files>` plus a manifest `<prefix>/manifests/<hash>.json` (every
file's path, size and SHA-256), written LAST: a version without its manifest is incomplete and is
never used. The manifest sits outside the version's prefix so the repository Triton downloads
stays a pure model repository.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.models.repository import Repository

MANIFEST_FORMAT = 1


def s3_client(*, profile: str | None = None, endpoint_url: str | None = None,
              access_key_id: str | None = None, secret_access_key: str | None = None,
              region: str | None = None) -> Any:
    """An S3 client; every argument left None falls back to boto3's usual lookup."""
    import boto3

    session = boto3.session.Session(profile_name=profile, aws_access_key_id=access_key_id,
                                    aws_secret_access_key=secret_access_key, region_name=region)
    return session.client("s3", endpoint_url=endpoint_url)


class RegistryError(Exception):
    """A version that is missing, incomplete or corrupted; nothing was changed by the command."""


class MissingVersion(RegistryError):
    """The bucket answered that the version's manifest is not there."""


def manifest_key(prefix: str, version: str) -> str:
    return f"{prefix}/manifests/{version}.json"


def object_key(prefix: str, version: str, relative: str) -> str:
    return f"{prefix}/{version}/{relative}"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_for(repository: Repository) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "version": repository.content_hash,
        "models": sorted(repository.models),
        "files": [{"path": relative, "size": (repository.root / relative).stat().st_size,
                   "sha256": sha256_file(repository.root / relative)}
                  for relative in repository.files],
    }


def manifest_body(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def read_manifest(s3: Any, bucket: str, prefix: str, version: str) -> dict[str, Any]:
    try:
        body = s3.get_object(Bucket=bucket, Key=manifest_key(prefix, version))["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise MissingVersion(f"s3://{bucket}/{manifest_key(prefix, version)}: no such version "
                            "(no manifest: never published, or its copy never finished)") from None
    except s3.exceptions.ClientError as exc:
        # Without s3:ListBucket, S3 answers AccessDenied instead of NoSuchKey.
        raise RegistryError(f"s3://{bucket}/{manifest_key(prefix, version)}: "
                            f"{exc.response.get('Error', {}).get('Code', exc)}") from None
    manifest = json.loads(body)
    if manifest.get("version") != version or manifest.get("format") != MANIFEST_FORMAT:
        raise RegistryError(f"s3://{bucket}/{manifest_key(prefix, version)}: not a manifest of "
                            f"version {version}")
    return manifest


def _object_sha256(s3: Any, bucket: str, key: str) -> tuple[str, int] | None:
    try:
        stream = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except s3.exceptions.NoSuchKey:
        return None
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def verify(s3: Any, bucket: str, prefix: str, manifest: dict[str, Any]) -> list[str]:
    """Problems with the objects of a version in `bucket`, checked against its manifest."""
    problems = []
    for entry in manifest["files"]:
        key = object_key(prefix, manifest["version"], entry["path"])
        found = _object_sha256(s3, bucket, key)
        if found is None:
            problems.append(f"s3://{bucket}/{key}: missing")
        elif found != (entry["sha256"], entry["size"]):
            problems.append(f"s3://{bucket}/{key}: SHA-256 {found[0][:12]}… size {found[1]}, "
                            f"manifest says {entry['sha256'][:12]}… size {entry['size']}")
    return problems


def publish(s3: Any, repository: Repository, bucket: str, prefix: str) -> str:
    """Upload the (already validated) repository under its hash, manifest last; idempotent."""
    manifest = manifest_for(repository)
    for entry in manifest["files"]:
        s3.upload_file(str(repository.root / entry["path"]), bucket,
                       object_key(prefix, repository.content_hash, entry["path"]))
    problems = verify(s3, bucket, prefix, manifest)
    if problems:
        raise RegistryError("upload could not be verified:\n  " + "\n  ".join(problems))
    s3.put_object(Bucket=bucket, Key=manifest_key(prefix, repository.content_hash),
                  Body=manifest_body(manifest), ContentType="application/json")
    return repository.content_hash


@dataclass
class CopyResult:
    version: str
    copied: int
    already_there: int


def copy_version(source: Any, target: Any, *, source_bucket: str, target_bucket: str,
                 prefix: str, version: str,
                 copy_object: Callable[..., Any] | None = None) -> CopyResult:
    """Copy one version between buckets (server-side, with the target's credentials), verify
    every object against the source manifest, then write the target manifest. Re-running
    finishes an interrupted copy; a corrupted source or target object aborts before the target
    manifest exists."""
    manifest = read_manifest(source, source_bucket, prefix, version)
    source_problems = verify(source, source_bucket, prefix, manifest)
    if source_problems:
        raise RegistryError(f"source version {version} is corrupted; nothing copied:\n  "
                            + "\n  ".join(source_problems))
    # The managed copy switches to multipart above 5 GB, where a single CopyObject fails.
    copy = copy_object or (lambda **kw: target.copy(kw["CopySource"], kw["Bucket"], kw["Key"]))
    copied = already = 0
    for entry in manifest["files"]:
        key = object_key(prefix, version, entry["path"])
        if _object_sha256(target, target_bucket, key) == (entry["sha256"], entry["size"]):
            already += 1
            continue
        copy(Bucket=target_bucket, Key=key, CopySource={"Bucket": source_bucket, "Key": key})
        copied += 1
    problems = verify(target, target_bucket, prefix, manifest)
    if problems:
        raise RegistryError(f"copy of {version} to s3://{target_bucket} failed verification; "
                            "the target manifest was not written:\n  " + "\n  ".join(problems))
    target.put_object(Bucket=target_bucket, Key=manifest_key(prefix, version),
                      Body=manifest_body(manifest), ContentType="application/json")
    return CopyResult(version=version, copied=copied, already_there=already)
