"""components/model_repository.py: the content-addressed, validated upload."""

from __future__ import annotations

import shutil

import pytest

from components.model_repository import ModelRepositoryError
from tests.harness import ROOT_DIR, evaluate, set_path, stack_config
from tools.models import repository

OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"


def keys(graph):
    return sorted(o.inputs["key"] for o in graph.of_type(OBJECT))


def files(graph):
    return [o for o in graph.of_type(OBJECT) if "/manifests/" not in o.inputs["key"]]


def copy_of_repo(tmp_path):
    target = tmp_path / "repo_copy"
    shutil.copytree(ROOT_DIR / "model_repo", target)
    return target


def with_repo(path):
    return set_path(stack_config("dev"), "modelRepository.path", str(path))


def test_every_file_uploaded_under_the_content_hash(graph):
    digest = repository.load(ROOT_DIR / "model_repo").content_hash
    assert keys(graph) == [f"models/{digest}/cifar10/1/model.pt",
                           f"models/{digest}/cifar10/config.pbtxt",
                           f"models/{digest}/cifar10/configs/cpu.pbtxt",
                           f"models/{digest}/cifar10/labels.txt",
                           f"models/manifests/{digest}.json"]
    bucket = graph.exports["modelBucketName"]
    assert graph.exports["modelStorageUri"] == f"s3://{bucket}/models/{digest}"
    assert graph.exports["modelContentHash"] == digest
    for obj in files(graph):
        assert obj.inputs["source"]["fileAsset"] == "model_repo/" + obj.inputs["key"].split(
            f"{digest}/", 1)[1]
        assert obj.inputs["bucket"] == bucket


def test_old_versions_are_kept_for_rollback(graph):
    """When the hash moves on, the engine forgets the old objects instead of deleting them."""
    objects = graph.of_type(OBJECT)
    assert objects and all(o.retain_on_delete for o in objects)
    assert not any(r.retain_on_delete for r in graph.resources if r.type != OBJECT)


def test_objects_wait_for_the_buckets_protections(graph):
    ready = ["aws:s3/bucketServerSideEncryptionConfiguration:"
             "BucketServerSideEncryptionConfiguration",
             "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
             "aws:s3/bucketPolicy:BucketPolicy", "aws:s3/bucketVersioning:BucketVersioning"]
    for obj in graph.of_type(OBJECT):
        for type_ in ready:
            assert graph.waits_for(obj, graph.one(type_)), type_


def test_same_tree_same_keys_and_a_changed_byte_a_new_prefix(tmp_path, dev):
    copy = copy_of_repo(tmp_path)
    same = evaluate("dev", config=with_repo(copy))
    assert keys(same) == keys(dev)
    labels = copy / "cifar10" / "labels.txt"
    labels.write_bytes(labels.read_bytes().replace(b"plane", b"plane "))
    changed = evaluate("dev", config=with_repo(copy))
    assert not set(keys(changed)) & set(keys(dev))
    assert changed.exports["modelContentHash"] != dev.exports["modelContentHash"]


def test_a_broken_model_is_never_uploaded(tmp_path):
    copy = copy_of_repo(tmp_path)
    (copy / "cifar10" / "1" / "model.pt").unlink()
    graph = evaluate("dev", config=with_repo(copy))
    assert isinstance(graph.error, ModelRepositoryError)
    assert "repo_copy/cifar10/1/model.pt: missing" in str(graph.error)
    assert graph.resources == [] and graph.invokes == []


def test_missing_repository_folder(tmp_path):
    graph = evaluate("dev", config=with_repo(tmp_path / "nowhere"))
    assert isinstance(graph.error, ModelRepositoryError)
    assert graph.resources == []


@pytest.mark.parametrize("prefix", ["/models", "models/", "Models", "a//b"])
def test_prefix_is_validated(prefix):
    graph = evaluate("dev", config=set_path(stack_config("dev"), "modelRepository.prefix", prefix))
    assert "mlserve:modelRepository.prefix: must match" in str(graph.error)


def test_manifest_is_written_last_and_matches_the_files(graph):
    import hashlib
    import json

    (manifest,) = [o for o in graph.of_type(OBJECT) if "/manifests/" in o.inputs["key"]]
    for obj in files(graph):
        assert graph.waits_for(manifest, obj)
    body = json.loads(manifest.inputs["content"])
    assert body["version"] == graph.exports["modelContentHash"]
    for entry in body["files"]:
        data = (ROOT_DIR / "model_repo" / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["size"] == len(data)


def test_a_pinned_version_is_served_without_uploading():
    pinned = "0123456789abcdef0123"
    graph = evaluate("staging", config=set_path(stack_config("staging"),
                                                "modelRepository.version", pinned))
    assert graph.of_type(OBJECT) == []
    assert graph.exports["modelStorageUri"].endswith(f"/models/{pinned}")
    assert graph.exports["models"]["cifar10"]["version"] == pinned
