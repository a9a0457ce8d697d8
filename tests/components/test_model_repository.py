"""components/model_repository.py: the repository validated in full, each model uploaded under its
own version; pinned versions served from the bucket, never uploaded, checked at `up`."""

from __future__ import annotations

import json
import shutil

import pytest

from components.model_repository import ModelRepositoryError
from modelrepo import repository
from modelrepo.layout import version_uri
from tests.components.test_config import rejected
from tests.harness import ROOT_DIR, evaluate, set_path, stack_config

OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
CHECK = "pulumi-python:dynamic:Resource"
PINNED = "0123456789abcdef0123"


def keys(graph):
    return sorted(o.inputs["key"] for o in graph.of_type(OBJECT))


def files(graph):
    return [o for o in graph.of_type(OBJECT) if "/manifests/" not in o.inputs["key"]]


def copy_of_repo(tmp_path):
    target = tmp_path / "repo_copy"
    shutil.copytree(ROOT_DIR / "model_repo", target)
    return target


def with_second_model(root):
    """A second model, `other` (a copy of cifar10), in the repository at `root`."""
    shutil.copytree(root / "cifar10", root / "other")
    for config in (root / "other" / "config.pbtxt", root / "other" / "configs" / "cpu.pbtxt"):
        config.write_text(config.read_text().replace('name: "cifar10"', 'name: "other"'))
    return root


def two_model_stack(root, **other):
    """dev serving cifar10 and `other` from the repository at `root`."""
    config = set_path(stack_config("dev"), "modelRepository.path", str(root))
    settings = json.loads(config["mlserve:modelServing"])["models"]["cifar10"]
    return set_path(config, "modelServing.models.other", {**settings, **other})


def with_repo(path):
    return set_path(stack_config("dev"), "modelRepository.path", str(path))


def test_each_model_uploaded_under_its_own_version(graph):
    version = repository.load(ROOT_DIR / "model_repo").models["cifar10"].content_hash
    assert keys(graph) == [f"models/{version}/cifar10/1/model.pt",
                           f"models/{version}/cifar10/config.pbtxt",
                           f"models/{version}/cifar10/configs/cpu.pbtxt",
                           f"models/{version}/cifar10/labels.txt",
                           f"models/manifests/{version}.json"]
    bucket = graph.exports["modelBucketName"]
    assert graph.exports["modelVersions"] == {"cifar10": version}
    assert graph.exports["modelStorageUris"] == {"cifar10": version_uri(bucket, "models",
                                                                         version)}
    for obj in files(graph):
        assert obj.inputs["source"]["fileAsset"] == "model_repo/" + obj.inputs["key"].split(
            f"{version}/", 1)[1]
        assert obj.inputs["bucket"] == bucket


def test_changing_one_model_rolls_that_model_only(tmp_path):
    root = with_second_model(copy_of_repo(tmp_path))
    before = evaluate("dev", config=two_model_stack(root))
    assert before.error is None, before.error
    labels = root / "other" / "labels.txt"
    labels.write_bytes(labels.read_bytes().replace(b"plane", b"plane "))
    after = evaluate("dev", config=two_model_stack(root))
    old, new = before.exports["modelVersions"], after.exports["modelVersions"]
    assert new["cifar10"] == old["cifar10"] and new["other"] != old["other"]
    # cifar10's objects and server stay exactly the same; other's move to a new version.
    cifar10 = [k for k in keys(after) if old["cifar10"] in k]
    assert cifar10 and set(cifar10) <= set(keys(before))
    assert not [k for k in keys(after) if old["other"] in k]
    assert inference_services(after)["cifar10-stable"] == \
        inference_services(before)["cifar10-stable"]
    assert inference_services(after)["other-stable"] != inference_services(before)["other-stable"]


def inference_services(graph):
    return {r.inputs["metadata"]["name"]: r.inputs for r in graph.resources
            if r.type.endswith(":InferenceService") and r.custom}


def test_same_tree_same_keys(tmp_path, dev):
    assert keys(evaluate("dev", config=with_repo(copy_of_repo(tmp_path)))) == keys(dev)


def test_old_versions_are_kept_for_rollback(graph):
    """When a version moves on, the engine forgets the old objects instead of deleting them."""
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


def test_manifest_is_written_last_and_matches_the_files(graph):
    import hashlib

    (manifest,) = [o for o in graph.of_type(OBJECT) if "/manifests/" in o.inputs["key"]]
    for obj in files(graph):
        assert graph.waits_for(manifest, obj)
    body = json.loads(manifest.inputs["content"])
    assert body["version"] == graph.exports["modelVersions"]["cifar10"]
    assert body["model"] == "cifar10" and body["format"] == 2
    for entry in body["files"]:
        data = (ROOT_DIR / "model_repo" / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["size"] == len(data)


# ---- a broken repository: all problems at once, nothing registered ---------------------------


def test_a_broken_model_is_never_uploaded_and_every_problem_is_reported(tmp_path):
    root = with_second_model(copy_of_repo(tmp_path))
    (root / "cifar10" / "1" / "model.pt").unlink()
    config = root / "other" / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size: 64", "max_batch_size: -1"))
    graph = evaluate("dev", config=two_model_stack(root))
    assert isinstance(graph.error, ModelRepositoryError)
    assert len(graph.error.problems) >= 2
    assert any("repo_copy/cifar10/1/model.pt: missing" in p for p in graph.error.problems)
    assert any("repo_copy/other/config.pbtxt: max_batch_size" in p
               for p in graph.error.problems)
    assert graph.resources == [] and graph.invokes == []


def test_a_wrong_repository_path_names_the_key(tmp_path):
    graph = evaluate("dev", config=with_repo(tmp_path / "nowhere"))
    assert isinstance(graph.error, ModelRepositoryError)
    assert graph.error.problems == [f"mlserve:modelRepository.path: "
                                    f"{str(tmp_path / 'nowhere')!r} is not a folder of the "
                                    "project (no model repository there)"]
    assert graph.resources == []


@pytest.mark.parametrize("prefix", ["/models", "models/", "Models", "a//b"])
def test_prefix_is_validated(prefix):
    graph = evaluate("dev", config=set_path(stack_config("dev"), "modelRepository.prefix", prefix))
    assert "mlserve:modelRepository.prefix: must match" in str(graph.error)


def test_the_repository_wide_version_is_gone_with_a_pointer_to_the_per_model_pin():
    error = rejected("staging", {"modelRepository.version": PINNED})
    assert error.problems == ["mlserve:modelRepository.version: removed: each model has its own "
                              "version now; pin a model with modelServing.models.<name>.version "
                              "(python -m tools.promote writes it)"]


# ---- pinning, per model ---------------------------------------------------------------------


def pinned_stack(stack="staging", **pins):
    config = stack_config(stack)
    for path, value in pins.items():
        config = set_path(config, path, value)
    return evaluate(stack, config=config)


def test_a_pinned_model_is_served_from_the_bucket_and_not_uploaded():
    graph = pinned_stack(**{"modelServing.models.cifar10.version": PINNED})
    assert graph.error is None, graph.error
    assert graph.of_type(OBJECT) == []
    assert graph.exports["modelVersions"] == {"cifar10": PINNED}
    assert graph.exports["modelStorageUris"]["cifar10"].endswith(f"/models/{PINNED}")
    assert graph.exports["models"]["cifar10"]["version"] == PINNED


def test_a_pinned_version_is_checked_in_the_bucket_before_any_model_server_uses_it():
    graph = pinned_stack(**{"modelServing.models.cifar10.version": PINNED})
    (check,) = graph.of_type(CHECK)
    assert check.inputs["action"] == "verify"
    assert (check.inputs["model"], check.inputs["version"]) == ("cifar10", PINNED)
    assert check.inputs["config_key"] == "mlserve:modelServing.models.cifar10.version"
    assert check.inputs["bucket"] == graph.exports["modelBucketName"]
    assert check.inputs.get("endpoint") is None and check.inputs["region"] == "us-west-2"
    (service,) = [r for r in graph.resources if r.type.endswith(":InferenceService")
                  and r.custom]
    assert graph.waits_for(service, check)


def test_one_model_pinned_the_other_follows_the_folder(tmp_path):
    root = with_second_model(copy_of_repo(tmp_path))
    graph = evaluate("dev", config=two_model_stack(root, version=PINNED))
    assert graph.error is None, graph.error
    cifar10 = repository.load(root).models["cifar10"].content_hash
    assert graph.exports["modelVersions"] == {"cifar10": cifar10, "other": PINNED}
    assert {k.split("/")[2] for k in keys(graph) if "/manifests/" not in k} == {"cifar10"}
    (check,) = graph.of_type(CHECK)
    assert (check.inputs["model"], check.inputs["version"]) == ("other", PINNED)


def test_a_canary_from_the_folder_is_uploaded_while_the_stable_version_is_pinned():
    graph = pinned_stack(**{"modelServing.models.cifar10.version": PINNED,
                            "modelServing.models.cifar10.canary": {"percent": 10}})
    folder = repository.load(ROOT_DIR / "model_repo").models["cifar10"].content_hash
    assert graph.exports["models"]["cifar10"]["canaryVersion"] == folder
    assert f"models/manifests/{folder}.json" in keys(graph)
    (check,) = graph.of_type(CHECK)
    assert check.inputs["version"] == PINNED


def test_a_pinned_canary_is_checked_not_uploaded():
    canary = "fedcba9876543210fedc"
    graph = pinned_stack(**{"modelServing.models.cifar10.version": PINNED,
                            "modelServing.models.cifar10.canary": {"percent": 10,
                                                                   "version": canary}})
    assert graph.of_type(OBJECT) == []
    checks = {(c.inputs["version"], c.inputs["config_key"]) for c in graph.of_type(CHECK)}
    assert checks == {(PINNED, "mlserve:modelServing.models.cifar10.version"),
                      (canary, "mlserve:modelServing.models.cifar10.canary.version")}


def test_pinned_versions_are_checked_in_an_s3_compatible_store_too():
    graph = pinned_stack("local", **{"modelServing.models.cifar10.version": PINNED})
    (check,) = [c for c in graph.of_type(CHECK) if c.inputs["action"] == "verify"]
    assert check.inputs["endpoint"] == "http://localhost:30900"
    assert {"access_key_id", "secret_access_key"} <= set(check.secret_inputs)
    assert not [c for c in graph.of_type(CHECK) if c.inputs["action"] == "publish"]
