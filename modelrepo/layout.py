"""The formats a model version is known by, in one place: its content hash, the storage URI its
model servers are given, and the keys of its objects and manifest in the bucket.

    <prefix>/<version>/<model>/...        the model's files: a single-model Triton repository
    <prefix>/manifests/<version>.json     the model, and every file's path, size and SHA-256

A version is the content hash of the model's own files (their paths and bytes), so it can always
be recomputed from the objects (modelrepo/registry.py does, before and after every copy).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

HASH_LENGTH = 20
VERSION_PATTERN = rf"^[0-9a-f]{{{HASH_LENGTH}}}$"
"""A model version: the first HASH_LENGTH hex digits of the content hash."""
VERSION = re.compile(VERSION_PATTERN)


def hash_of_digests(entries: Iterable[tuple[str, bytes]]) -> str:
    """The content hash from each file's path (relative to the repository root) and SHA-256
    digest, in path order: anyone holding the files, or a list of their digests, can recompute
    a version and check it."""
    digest = hashlib.sha256()
    for relative, file_digest in sorted(entries):
        digest.update(relative.encode() + b"\0")
        digest.update(file_digest)
    return digest.hexdigest()[:HASH_LENGTH]


def version_uri(bucket: str, prefix: str, version: str) -> str:
    """Where a model version lies: the storageUri its model servers are given."""
    return f"s3://{bucket}/{prefix}/{version}"


def object_key(prefix: str, version: str, relative: str) -> str:
    """`relative` is the file's path from the repository root, `<model>/...`."""
    return f"{prefix}/{version}/{relative}"


def manifest_key(prefix: str, version: str) -> str:
    return f"{prefix}/manifests/{version}.json"


def uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"
