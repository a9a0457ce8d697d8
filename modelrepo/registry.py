"""Model versions in S3: publish each model under its own content hash, verify a version from its
bytes, and copy a version from one bucket to another.

The layout under one key prefix of a bucket is modelrepo/layout.py's. A version is the model's
content hash, so it can always be recomputed from the objects. The manifest is written LAST: a
version without its manifest is incomplete and never used. It sits outside the version's prefix so what
Triton downloads (`version_uri`, the storageUri a model server is given) stays a pure model
repository. A version is trusted only when its manifest's entries hash to its name AND every
object's bytes match the manifest, checked before and after every copy, so a manifest and an
object tampered with together are refused.

Every S3 failure becomes a RegistryError of one line that names the object (s3://bucket/key), the
operation and the AWS error code; nothing here prints a traceback for an AWS fault.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelrepo.layout import (
    hash_of_digests,
    manifest_key,
    object_key,
    uri,
    version_uri,
)
from modelrepo.repository import Repository

MANIFEST_FORMAT = 2
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# S3's answers that mean "no such object" (404), and the one it gives instead when the caller
# may not list the bucket (403; GetObject/HeadObject API reference, "Permissions").
_MISSING = ("NoSuchKey", "404", "NotFound")
_DENIED = ("AccessDenied", "403", "Forbidden")


def s3_client(*, profile: str | None = None, endpoint_url: str | None = None,
              access_key_id: str | None = None, secret_access_key: str | None = None,
              region: str | None = None) -> Any:
    """An S3 client; every argument left None falls back to boto3's usual lookup. Retries use
    botocore's standard mode (throttling such as 503 SlowDown and dropped connections are
    retried with backoff; AWS_MAX_ATTEMPTS sets the attempts)."""
    import boto3
    from botocore.config import Config

    with aws_errors("creating an S3 client", f"AWS profile {profile}" if profile
                    else "AWS credentials"):
        session = boto3.session.Session(profile_name=profile, aws_access_key_id=access_key_id,
                                        aws_secret_access_key=secret_access_key,
                                        region_name=region)
        return session.client("s3", endpoint_url=endpoint_url,
                              config=Config(retries={"mode": "standard"}))


class RegistryError(Exception):
    """A version that is missing, incomplete or corrupted, or an S3 request that failed; one
    line per problem, naming the object."""


class MissingVersion(RegistryError):
    """The bucket answered that the version's manifest is not there."""


class S3Error(RegistryError):
    """An S3 request failed (after botocore's retries): the object, the operation, the code."""

    def __init__(self, where: str, operation: str, code: str, message: str):
        self.where, self.operation, self.code = where, operation, code
        detail = f" ({message})" if message and message != code else ""
        super().__init__(f"{where}: {operation} failed: {code}{detail}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _client_error(exc: BaseException) -> Any:
    """The botocore ClientError behind `exc` (boto3's transfer wrappers chain it), if any."""
    from botocore.exceptions import ClientError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ClientError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def error_code(exc: BaseException) -> str:
    error = _client_error(exc)
    if error is None:
        return type(exc).__name__
    return str(error.response.get("Error", {}).get("Code")
               or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "Error")


@contextmanager
def aws_errors(operation: str, where: str) -> Iterator[None]:
    """Turn every botocore/boto3 failure inside into an S3Error naming `where` (s3://bucket/key),
    the operation and the AWS code: no tracebacks for AWS faults."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError, Boto3Error) as exc:
        error = _client_error(exc)
        message = (error.response.get("Error", {}).get("Message", "") if error is not None
                   else str(exc))
        raise S3Error(where, operation, error_code(exc), _one_line(message)) from None


# ---- manifests --------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_of_entries(entries: Sequence[dict[str, Any]]) -> str:
    """The version the manifest entries (path, sha256) hash to."""
    return hash_of_digests((e["path"], bytes.fromhex(e["sha256"])) for e in entries)


def manifest_for(repository: Repository, model: str) -> dict[str, Any]:
    """The manifest of one model's version, from the files on disk; refuses files that changed
    since the repository was loaded (they would no longer hash to the version)."""
    found = repository.models[model]
    files = [{"path": relative, "size": (repository.root / relative).stat().st_size,
              "sha256": sha256_file(repository.root / relative)} for relative in found.files]
    manifest = {"format": MANIFEST_FORMAT, "model": model, "version": found.content_hash,
                "files": files}
    if hash_of_entries(files) != found.content_hash:
        raise RegistryError(f"{repository.root.name}/{model}: files changed while publishing "
                            f"(they no longer hash to {found.content_hash}); validate and retry")
    return manifest


def manifest_body(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def manifest_problems(manifest: Any, version: str) -> list[str]:
    """What makes `manifest` unfit to describe `version` (empty when it is fit)."""
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        return [f"not a model-version manifest of format {MANIFEST_FORMAT} (format {found!r}"
                + (": a whole-repository version from before per-model versions; publish the "
                   "model again" if found == 1 else "") + ")"]
    model, files = manifest.get("model"), manifest.get("files")
    problems = []
    if manifest.get("version") != version:
        problems.append(f"names version {manifest.get('version')!r}, not {version}")
    if not isinstance(model, str) or not _MODEL_NAME.match(model):
        problems.append(f"names no valid model ({model!r})")
    if not isinstance(files, list) or not files:
        return [*problems, "lists no files"]
    paths = []
    for entry in files:
        path = entry.get("path") if isinstance(entry, dict) else None
        if (not isinstance(path, str) or not path.startswith(f"{model}/") or ".." in path.split("/")
                or not isinstance(entry.get("size"), int)
                or not re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256")))):
            problems.append(f"has an invalid file entry {entry!r}")
        else:
            paths.append(path)
    if len(set(paths)) != len(paths):
        problems.append("lists a file twice")
    if not problems and hash_of_entries(files) != version:
        problems.append(f"its files hash to {hash_of_entries(files)}, not to the version "
                        f"{version}: the manifest was altered")
    return problems


def read_manifest(s3: Any, bucket: str, prefix: str, version: str) -> dict[str, Any]:
    """The manifest of `version`, checked (format, model, and that its entries hash to the
    version); MissingVersion when there is none."""
    key = manifest_key(prefix, version)
    where = uri(bucket, key)
    try:
        with aws_errors("GetObject", where):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except S3Error as exc:
        if exc.code in _MISSING:
            raise MissingVersion(f"{where}: no such version (no manifest: never published, or "
                                 "its copy never finished)") from None
        if exc.code in _DENIED:
            raise RegistryError(f"{exc}: the version does not exist, or these credentials may "
                                "not read it (without s3:ListBucket, S3 answers AccessDenied "
                                "for a missing key)") from None
        raise
    try:
        manifest = json.loads(body)
    except ValueError:
        raise RegistryError(f"{where}: not JSON; the manifest is corrupted") from None
    problems = manifest_problems(manifest, version)
    if problems:
        raise RegistryError(f"{where}: " + "; ".join(problems))
    return manifest


# ---- objects ----------------------------------------------------------------------------------


def _object_digest(s3: Any, bucket: str, key: str, *,
                   denied_means_missing: bool = False) -> tuple[bytes, int] | None:
    """(SHA-256 digest, size) of the object's bytes, or None when it is missing (or, with
    `denied_means_missing`, when S3 answers 403, as it does for a missing key to a caller
    without s3:ListBucket)."""
    digest, size = hashlib.sha256(), 0
    try:
        with aws_errors("GetObject", uri(bucket, key)):
            stream = s3.get_object(Bucket=bucket, Key=key)["Body"]
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
    except S3Error as exc:
        if exc.code in _MISSING or (denied_means_missing and exc.code in _DENIED):
            return None
        raise
    return digest.digest(), size


def verify(s3: Any, bucket: str, prefix: str, manifest: dict[str, Any]) -> list[str]:
    """Problems with the objects of a version in `bucket`: each object's bytes against the
    manifest, and the version recomputed from the bytes actually read."""
    version = manifest["version"]
    problems, digests = [], []
    for entry in manifest["files"]:
        key = object_key(prefix, version, entry["path"])
        found = _object_digest(s3, bucket, key)
        if found is None:
            problems.append(f"{uri(bucket, key)}: missing")
            continue
        digests.append((entry["path"], found[0]))
        if (found[0].hex(), found[1]) != (entry["sha256"], entry["size"]):
            problems.append(f"{uri(bucket, key)}: SHA-256 {found[0].hex()[:12]}… size "
                            f"{found[1]}, manifest says {entry['sha256'][:12]}… size "
                            f"{entry['size']}")
    if not problems and hash_of_digests(digests) != version:
        problems.append(f"{version_uri(bucket, prefix, version)}: the objects hash to "
                        f"{hash_of_digests(digests)}, not to the version")
    return problems


def check_version(s3: Any, bucket: str, prefix: str, version: str,
                  model: str | None = None) -> dict[str, Any]:
    """The manifest of a version (of `model`, when given) that is complete and intact in
    `bucket`, or RegistryError."""
    manifest = read_manifest(s3, bucket, prefix, version)
    if model is not None and manifest["model"] != model:
        raise RegistryError(f"{version_uri(bucket, prefix, version)} holds model "
                            f"{manifest['model']!r}, not {model!r}")
    problems = verify(s3, bucket, prefix, manifest)
    if problems:
        raise RegistryError(f"{version_uri(bucket, prefix, version)} ({manifest['model']}) is "
                            "corrupted: " + "; ".join(problems))
    return manifest


# ---- publishing and copying ---------------------------------------------------------------


def publish_model(s3: Any, repository: Repository, model: str, bucket: str, prefix: str) -> str:
    """Upload one (already validated) model under its version, verify the objects, then write
    the manifest; idempotent. Returns the version."""
    manifest = manifest_for(repository, model)
    version = manifest["version"]
    for entry in manifest["files"]:
        key = object_key(prefix, version, entry["path"])
        with aws_errors("PutObject", uri(bucket, key)):
            s3.upload_file(str(repository.root / entry["path"]), bucket, key)
    problems = verify(s3, bucket, prefix, manifest)
    if problems:
        raise RegistryError(f"upload of {model} {version} could not be verified: "
                            + "; ".join(problems))
    key = manifest_key(prefix, version)
    with aws_errors("PutObject", uri(bucket, key)):
        s3.put_object(Bucket=bucket, Key=key, Body=manifest_body(manifest),
                      ContentType="application/json")
    return version


def publish(s3: Any, repository: Repository, bucket: str, prefix: str,
            models: Sequence[str] | None = None) -> dict[str, str]:
    """Publish each model (default: all) under its own version; {model: version}."""
    return {name: publish_model(s3, repository, name, bucket, prefix)
            for name in (models or sorted(repository.models))}


@dataclass
class CopyResult:
    model: str
    version: str
    copied: int
    already_there: int


def copy_version(source: Any, target: Any, *, source_bucket: str, target_bucket: str,
                 prefix: str, version: str, model: str | None = None,
                 copy_object: Callable[..., Any] | None = None) -> CopyResult:
    """Copy one model version between buckets (server-side, with the target's credentials).

    The source is checked first (manifest entries hash to the version; every object's bytes
    match and hash to it); the target objects are checked the same way after the copy, and
    only then is the target manifest written. Re-running finishes an interrupted copy. Works
    for a target role without s3:ListBucket: a 403 for a not-yet-copied object means "copy it".
    """
    manifest = check_version(source, source_bucket, prefix, version, model)
    # The managed copy switches to multipart above 5 GB, where a single CopyObject fails.
    copy = copy_object or (lambda **kw: target.copy(kw["CopySource"], kw["Bucket"], kw["Key"]))
    copied = already = 0
    for entry in manifest["files"]:
        key = object_key(prefix, version, entry["path"])
        there = _object_digest(target, target_bucket, key, denied_means_missing=True)
        if there is not None and (there[0].hex(), there[1]) == (entry["sha256"], entry["size"]):
            already += 1
            continue
        with aws_errors(f"CopyObject from {uri(source_bucket, key)}", uri(target_bucket, key)):
            copy(Bucket=target_bucket, Key=key, CopySource={"Bucket": source_bucket, "Key": key})
        copied += 1
    problems = verify(target, target_bucket, prefix, manifest)
    if problems:
        raise RegistryError(f"copy of {manifest['model']} {version} to s3://{target_bucket} "
                            "failed verification; the target manifest was not written: "
                            + "; ".join(problems))
    key = manifest_key(prefix, version)
    with aws_errors("PutObject", uri(target_bucket, key)):
        target.put_object(Bucket=target_bucket, Key=key, Body=manifest_body(manifest),
                          ContentType="application/json")
    return CopyResult(model=manifest["model"], version=version, copied=copied,
                      already_there=already)
