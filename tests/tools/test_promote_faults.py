"""Promotion under AWS faults, at every step it talks to S3: the real moto server answers, and
faults are injected on the way (botocore hooks for S3's error answers after botocore's retries,
a proxy that drops the TCP connections). Every fault must end in one line naming the object, the
operation and the AWS code, exit code 1, no traceback, no target manifest and an untouched stack
file."""

from __future__ import annotations

import shutil

import pytest

from modelrepo import repository
from modelrepo.layout import manifest_key
from modelrepo.registry import publish
from tests.harness import ROOT_DIR
from tests.s3_server import DroppingProxy, Faults, matching, moto_server
from tools import promote as promotion

DEV, STAGING, PREFIX = "dev-models", "staging-models", "models"
ATTEMPTS = 2

# Where promotion talks to S3: (which side's client, the request). In order: the source's
# manifest, a source object, the target's "already copied?" read, the server-side copy, the
# target manifest (written last).
STEPS = {
    "source-manifest": ("dev", matching("GetObject", "/manifests/")),
    "source-object": ("dev", matching("GetObject", "/cifar10/labels.txt")),
    "target-object": ("staging", matching("GetObject", "/cifar10/labels.txt")),
    "copy": ("staging", matching("CopyObject", "/cifar10/config.pbtxt")),
    "target-manifest": ("staging", matching("PutObject", "/manifests/")),
}
CODES = {"SlowDown": "SlowDown", "AccessDenied": "AccessDenied",
         "NoSuchBucket": "NoSuchBucket", "dropped": "ConnectionClosedError"}


@pytest.fixture(scope="module")
def server():
    with moto_server() as running:
        yield running


@pytest.fixture
def world(server, tmp_path, monkeypatch):
    """Two profiles (dev reads the source, staging writes the target), both through a proxy
    in front of a fresh moto, one published version, copies of the stack files."""
    server.reset()
    admin = server.client()
    for bucket in (DEV, STAGING):
        admin.create_bucket(Bucket=bucket)
    version = publish(admin, repository.load(ROOT_DIR / "model_repo"), DEV, PREFIX)["cifar10"]
    (tmp_path / "credentials").write_text("".join(
        f"[{p}]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
        for p in ("dev", "staging")))
    (tmp_path / "config").write_text("[profile dev]\nregion = us-east-1\n"
                                     "[profile staging]\nregion = us-east-1\n")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", str(ATTEMPTS))
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    for stack in ("dev", "staging"):
        shutil.copy(ROOT_DIR / f"Pulumi.{stack}.yaml", stacks)
    proxy = DroppingProxy(server.port)
    yield {"admin": admin, "version": version, "stacks": stacks, "proxy": proxy}
    proxy.close()


def hook_clients(monkeypatch, install):
    """The tool's own client factory, with `install(profile, client)` run on each client."""
    real = promotion.s3_client

    def hooked(**kwargs):
        client = real(**kwargs)
        install(kwargs.get("profile"), client)
        return client

    monkeypatch.setattr(promotion, "s3_client", hooked)


def run(world, capsys):
    code = promotion.main(["--from", "dev", "--to", "staging", "--model", "cifar10",
                           "--version", world["version"], "--source-bucket", DEV,
                           "--target-bucket", STAGING, "--source-profile", "dev",
                           "--target-profile", "staging", "--endpoint-url",
                           world["proxy"].url, "--stack-dir", str(world["stacks"])])
    return code, capsys.readouterr()


def target_keys(world):
    return [o["Key"] for o in world["admin"].list_objects_v2(Bucket=STAGING).get("Contents", [])]


@pytest.mark.parametrize("fault", sorted(CODES))
@pytest.mark.parametrize("step", list(STEPS))
def test_every_fault_at_every_step_is_one_clear_line(world, capsys, monkeypatch, step, fault):
    side, when = STEPS[step]
    injected = []

    def install(profile, client):
        if profile != side:
            return
        if fault == "dropped":
            world["proxy"].drop_when(client, when)
        else:
            injected.append(Faults(client, when, fault))

    hook_clients(monkeypatch, install)
    stack_file = world["stacks"] / "Pulumi.staging.yaml"
    before = stack_file.read_bytes()
    code, out = run(world, capsys)
    assert code == 1, out
    assert "Traceback" not in out.err
    (line,) = out.err.strip().splitlines()
    bucket = DEV if side == "dev" else STAGING
    assert line.startswith(f"promote: s3://{bucket}/{PREFIX}/"), line
    assert f"failed: {CODES[fault]}" in line, line
    if fault == "dropped":
        assert world["proxy"].dropped >= ATTEMPTS  # botocore retried on new connections
    else:
        # Throttling is retried, then given up; a denial or a missing bucket is final. (A 403
        # before the copy means "not there yet" to a role without s3:ListBucket: the check
        # after the copy is the one that fails.)
        reads = 2 if (step, fault) == ("target-object", "AccessDenied") else 1
        assert injected[0].failed == (ATTEMPTS if fault == "SlowDown" else 1) * reads
    assert stack_file.read_bytes() == before
    assert manifest_key(PREFIX, world["version"]) not in target_keys(world)


def test_a_transient_slow_down_is_retried_and_the_promotion_completes(world, capsys,
                                                                      monkeypatch):
    faults = []
    hook_clients(monkeypatch, lambda profile, client: faults.append(
        Faults(client, matching("CopyObject"), "SlowDown", times=1))
        if profile == "staging" else None)
    code, out = run(world, capsys)
    assert code == 0, out.err
    assert faults[0].failed == 1
    assert manifest_key(PREFIX, world["version"]) in target_keys(world)
    assert promotion.pinned_version(world["stacks"], "staging", "cifar10") == world["version"]


def test_a_connection_dropped_in_the_middle_of_a_download_is_one_line(world, capsys,
                                                                      monkeypatch):
    """The proxy passes the headers and part of model.pt, then drops: the body read fails
    after botocore's retries are over (streams are read outside them)."""
    def install(profile, client):
        if profile == "dev":
            world["proxy"].cut_responses_when(client, matching("GetObject", "/1/model.pt"),
                                              32768)

    hook_clients(monkeypatch, install)
    code, out = run(world, capsys)
    assert code == 1 and "Traceback" not in out.err
    (line,) = out.err.strip().splitlines()
    assert line.startswith(f"promote: s3://{DEV}/{PREFIX}/{world['version']}/cifar10/1/model.pt"
                           ": GetObject failed: "), line
    assert manifest_key(PREFIX, world["version"]) not in target_keys(world)
