"""tools/registry.py and tools/promote.py against a real S3 API server on loopback (moto), two
buckets standing in for two accounts."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import urllib.request

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.harness import ROOT_DIR
from tools import promote as promotion
from tools.models import repository
from tools.models.serve import free_port
from tools.registry import RegistryError, manifest_key, object_key, publish

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
DEV, STAGING, PROD = "dev-models", "staging-models", "prod-models"
PREFIX = "models"


@pytest.fixture
def s3(monkeypatch):
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    # moto keeps its state per process: start every test from empty buckets.
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))
    client = boto3.client("s3", endpoint_url=url)
    for bucket in (DEV, STAGING, PROD):
        client.create_bucket(Bucket=bucket)
    try:
        yield url, client
    finally:
        server.stop()


@pytest.fixture
def stacks(tmp_path):
    """Copies of the stack files, so pinning never touches the real ones."""
    for stack in ("dev", "staging", "prod"):
        shutil.copy(ROOT_DIR / f"Pulumi.{stack}.yaml", tmp_path)
    return tmp_path


@pytest.fixture
def published(s3):
    url, client = s3
    repo = repository.load(ROOT_DIR / "model_repo")
    return publish(client, repo, DEV, PREFIX), repo


def args(stack_dir, url, source=DEV, target=STAGING, frm="dev", to="staging", **extra):
    namespace = promotion.parser().parse_args(
        ["--from", frm, "--to", to, "--source-bucket", source, "--target-bucket", target,
         "--endpoint-url", url, "--stack-dir", str(stack_dir)])
    for key, value in extra.items():
        setattr(namespace, key, value)
    return namespace


def keys(client, bucket):
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_publish_writes_files_then_the_manifest(s3, published):
    _, client = s3
    version, repo = published
    assert version == repo.content_hash
    assert keys(client, DEV) == sorted([object_key(PREFIX, version, f) for f in repo.files]
                                       + [manifest_key(PREFIX, version)])


def test_happy_path_copies_verifies_and_pins(s3, published, stacks):
    url, client = s3
    version, repo = published
    promotion.promote(args(stacks, url, version=version))
    assert keys(client, STAGING) == keys(client, DEV)
    assert promotion.pinned_version(stacks, "staging") == version
    text = (stacks / "Pulumi.staging.yaml").read_text()
    assert "# staging: shaped like prod" in text  # comments kept


def test_rerun_is_idempotent(s3, published, stacks, capsys):
    url, client = s3
    version, _ = published
    promotion.promote(args(stacks, url, version=version))
    before = (stacks / "Pulumi.staging.yaml").read_text()
    promotion.promote(args(stacks, url, version=version))
    assert "0 object(s) copied, 4 already in" in capsys.readouterr().out
    assert (stacks / "Pulumi.staging.yaml").read_text() == before


def test_corrupted_object_aborts_and_leaves_the_pin(s3, published, stacks):
    url, client = s3
    version, _ = published
    client.put_object(Bucket=DEV, Key=object_key(PREFIX, version, "cifar10/labels.txt"),
                      Body=b"tampered")
    before = promotion.pinned_version(stacks, "staging")
    with pytest.raises(RegistryError, match="cifar10/labels.txt: SHA-256"):
        promotion.promote(args(stacks, url, version=version))
    assert promotion.pinned_version(stacks, "staging") == before
    assert manifest_key(PREFIX, version) not in keys(client, STAGING)


def test_interrupted_copy_is_never_usable_and_a_rerun_finishes_it(s3, published, stacks):
    url, client = s3
    version, _ = published
    calls = []

    def flaky_copy(**kwargs):
        calls.append(kwargs["Key"])
        if len(calls) == 2:
            raise ConnectionError("network dropped mid-copy")
        return client.copy_object(**kwargs)

    with pytest.raises(ConnectionError):
        promotion.promote(args(stacks, url, version=version), copy_object=flaky_copy)
    assert manifest_key(PREFIX, version) not in keys(client, STAGING)
    assert promotion.pinned_version(stacks, "staging") is None
    promotion.promote(args(stacks, url, version=version))
    assert manifest_key(PREFIX, version) in keys(client, STAGING)
    assert promotion.pinned_version(stacks, "staging") == version


def test_unknown_version(s3, stacks):
    url, _ = s3
    with pytest.raises(RegistryError, match="no such version"):
        promotion.promote(args(stacks, url, version="f" * 20))


def test_prod_needs_staging_first(s3, published, stacks):
    url, _ = s3
    version, _ = published
    with pytest.raises(promotion.PromotionError, match="not pinned in staging"):
        promotion.promote(args(stacks, url, source=STAGING, target=PROD, frm="staging",
                               to="prod", version=version))
    promotion.promote(args(stacks, url, version=version))
    promotion.promote(args(stacks, url, source=STAGING, target=PROD, frm="staging", to="prod",
                           version=version))
    assert promotion.pinned_version(stacks, "prod") == version


def test_stages_go_in_order(s3, stacks):
    url, _ = s3
    with pytest.raises(promotion.PromotionError, match="skips or reverses"):
        promotion.promote(args(stacks, url, frm="dev", to="prod", version="a" * 20))


def test_dry_run_changes_nothing(s3, published, stacks, capsys):
    url, client = s3
    version, _ = published
    promotion.promote(args(stacks, url, version=version, dry_run=True))
    assert keys(client, STAGING) == []
    assert promotion.pinned_version(stacks, "staging") is None
    assert (f"pulumi config set --path modelRepository.version {version} --stack staging"
            in capsys.readouterr().out)


def test_the_version_comes_from_the_source_stack_pin(s3, published, stacks):
    url, _ = s3
    version, _ = published
    promotion.pin(stacks, "dev", version)
    promotion.promote(args(stacks, url))  # no --version
    assert promotion.pinned_version(stacks, "staging") == version


def test_pinned_stack_file_still_evaluates(s3, published, stacks):
    from tests.harness import evaluate, stack_config

    url, _ = s3
    version, _ = published
    promotion.promote(args(stacks, url, version=version))
    import yaml

    pinned = yaml.safe_load((stacks / "Pulumi.staging.yaml").read_text())["config"]
    config = stack_config("staging")
    config["mlserve:modelRepository"] = __import__("json").dumps(
        pinned["mlserve:modelRepository"])
    graph = evaluate("staging", config=config)
    assert graph.error is None
    assert graph.exports["models"]["cifar10"]["version"] == version


def test_cli_publish_and_promote(s3, stacks):
    url, client = s3
    env = {**__import__("os").environ, **CREDENTIALS}
    published = subprocess.run(
        [sys.executable, "-m", "tools.models", "publish", "--bucket", DEV, "--endpoint-url", url,
         "--no-torch"], cwd=ROOT_DIR, capture_output=True, text=True, env=env, timeout=120)
    assert published.returncode == 0, published.stderr
    version = published.stdout.strip()
    promoted = subprocess.run(
        [sys.executable, "-m", "tools.promote", "--from", "dev", "--to", "staging", "--version",
         version, "--source-bucket", DEV, "--target-bucket", STAGING, "--endpoint-url", url,
         "--stack-dir", str(stacks)], cwd=ROOT_DIR, capture_output=True, text=True, env=env,
        timeout=120)
    assert promoted.returncode == 0, promoted.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "tools.promote", "--from", "dev", "--to", "staging", "--version",
         "e" * 20, "--source-bucket", DEV, "--target-bucket", STAGING, "--endpoint-url", url,
         "--stack-dir", str(stacks)], cwd=ROOT_DIR, capture_output=True, text=True, env=env,
        timeout=120)
    assert missing.returncode == 1 and "no such version" in missing.stderr


def test_a_stack_file_it_cannot_edit_safely_is_refused_before_copying(s3, published, stacks):
    url, client = s3
    version, _ = published
    path = stacks / "Pulumi.staging.yaml"
    path.write_text(path.read_text() + "  mlserve:modelRepository: {path: model_repo}\n")
    before = path.read_text()
    with pytest.raises(promotion.PromotionError, match="can't pin safely"):
        promotion.promote(args(stacks, url, version=version))
    assert path.read_text() == before
    assert keys(client, STAGING) == []


def with_prefix(stacks, stack, prefix):
    path = stacks / f"Pulumi.{stack}.yaml"
    path.write_text(path.read_text() + f"  mlserve:modelRepository:\n    prefix: {prefix}\n")


def test_the_prefix_comes_from_the_stack_files(s3, stacks):
    url, client = s3
    repo = repository.load(ROOT_DIR / "model_repo")
    version = publish(client, repo, DEV, "team-a/models")
    for stack in ("dev", "staging"):
        with_prefix(stacks, stack, "team-a/models")
    promotion.promote(args(stacks, url, version=version))
    assert keys(client, STAGING) == keys(client, DEV)
    expected = [object_key("team-a/models", version, f) for f in repo.files]
    assert keys(client, STAGING) == sorted(expected + [manifest_key("team-a/models", version)])
    assert promotion.pinned_version(stacks, "staging") == version


def test_stacks_with_different_prefixes_are_refused_before_copying(s3, published, stacks):
    url, client = s3
    version, _ = published
    with_prefix(stacks, "staging", "elsewhere")
    with pytest.raises(promotion.PromotionError, match="modelRepository.prefix differs"):
        promotion.promote(args(stacks, url, version=version))
    assert keys(client, STAGING) == []
