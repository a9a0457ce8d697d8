"""modelrepo/registry.py and tools/promote.py against a real S3 API server on loopback (moto): each
model published and promoted under its own version, checked from its bytes, pinned per model."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading

import pytest
import yaml

from modelrepo import repository
from modelrepo.layout import manifest_key, object_key
from modelrepo.registry import (
    MissingVersion,
    RegistryError,
    manifest_body,
    publish,
    sha256_file,
)
from tests.harness import ROOT_DIR
from tests.s3_server import CREDENTIALS, moto_server
from tools import promote as promotion
from tools.stack_files import StackFile, StackFileError

DEV, STAGING, PROD = "dev-models", "staging-models", "prod-models"
PREFIX = "models"


@pytest.fixture(scope="module")
def server():
    with moto_server() as running:
        yield running


@pytest.fixture
def s3(server, monkeypatch):
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    server.reset()
    client = server.client()
    for bucket in (DEV, STAGING, PROD):
        client.create_bucket(Bucket=bucket)
    return server.url, client


@pytest.fixture
def stacks(tmp_path):
    """Copies of the stack files, so pinning never touches the real ones."""
    for stack in ("dev", "staging", "prod", "local"):
        shutil.copy(ROOT_DIR / f"Pulumi.{stack}.yaml", tmp_path)
    return tmp_path


@pytest.fixture
def repo():
    return repository.load(ROOT_DIR / "model_repo")


@pytest.fixture
def published(s3, repo):
    _, client = s3
    return publish(client, repo, DEV, PREFIX)["cifar10"]


def two_models(tmp_path):
    """The shipped repository plus a second model, `other` (a copy of cifar10)."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT_DIR / "model_repo", root)
    shutil.copytree(root / "cifar10", root / "other")
    for config in (root / "other" / "config.pbtxt", root / "other" / "configs" / "cpu.pbtxt"):
        config.write_text(config.read_text().replace('name: "cifar10"', 'name: "other"'))
    return root


def serve_other(stacks, stack):
    """List model `other` in a stack file (a target must serve a model before it is pinned)."""
    path = stacks / f"Pulumi.{stack}.yaml"
    path.write_text(path.read_text().replace("    models:\n", "    models:\n      other:\n"
                                             "        minReplicas: 1\n", 1))


def args(stack_dir, url, source=DEV, target=STAGING, frm="dev", to="staging", **extra):
    namespace = promotion.parser().parse_args(
        ["--from", frm, "--to", to, "--source-bucket", source, "--target-bucket", target,
         "--endpoint-url", url, "--stack-dir", str(stack_dir)])
    for key, value in extra.items():
        setattr(namespace, key, value)
    return namespace


def one(stacks, url, version, model="cifar10", **extra):
    return args(stacks, url, model=[model], version=version, **extra)


def keys(client, bucket):
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def pinned(stacks, stack, model="cifar10"):
    return promotion.pinned_version(stacks, stack, model)


# ---- publishing ------------------------------------------------------------------------------


def test_publish_writes_one_model_under_its_own_version_then_the_manifest(s3, repo, published):
    _, client = s3
    model = repo.models["cifar10"]
    assert published == model.content_hash
    assert keys(client, DEV) == sorted([object_key(PREFIX, published, f) for f in model.files]
                                       + [manifest_key(PREFIX, published)])
    manifest = json.loads(client.get_object(Bucket=DEV, Key=manifest_key(PREFIX, published))[
        "Body"].read())
    assert manifest["model"] == "cifar10" and manifest["version"] == published
    assert [e["path"] for e in manifest["files"]] == list(model.files)
    assert all(e["sha256"] == sha256_file(repo.root / e["path"]) for e in manifest["files"])


def test_changing_one_model_moves_only_its_version(s3, tmp_path):
    _, client = s3
    root = two_models(tmp_path)
    before = publish(client, repository.load(root), DEV, PREFIX)
    labels = root / "other" / "labels.txt"
    labels.write_text(labels.read_text() + "\n")
    after = publish(client, repository.load(root), DEV, PREFIX)
    assert after["cifar10"] == before["cifar10"] and after["other"] != before["other"]
    # Each version is a valid single-model repository: nothing of the other model under it.
    for model, version in after.items():
        under = [k for k in keys(client, DEV) if k.startswith(f"{PREFIX}/{version}/")]
        assert under and all(k.startswith(f"{PREFIX}/{version}/{model}/") for k in under)


# ---- promotion, per model --------------------------------------------------------------------


def test_happy_path_copies_verifies_and_pins_the_model(s3, published, stacks):
    url, client = s3
    assert promotion.promote(one(stacks, url, published)) == {"cifar10": published}
    assert keys(client, STAGING) == keys(client, DEV)
    assert pinned(stacks, "staging") == published
    text = (stacks / "Pulumi.staging.yaml").read_text()
    assert "# staging: shaped like prod" in text  # comments kept
    config = yaml.safe_load(text)["config"]["mlserve:modelServing"]["models"]["cifar10"]
    assert config["gpuPool"] == "a10g" and config["version"] == published  # nothing else moved


def test_rerun_is_idempotent(s3, published, stacks, capsys):
    url, _ = s3
    promotion.promote(one(stacks, url, published))
    before = (stacks / "Pulumi.staging.yaml").read_text()
    promotion.promote(one(stacks, url, published))
    out = capsys.readouterr().out
    assert "0 object(s) copied, 4 already in" in out and "already pinned" in out
    assert (stacks / "Pulumi.staging.yaml").read_text() == before


def test_one_model_is_promoted_and_pinned_without_touching_another(s3, stacks, tmp_path):
    url, client = s3
    versions = publish(client, repository.load(two_models(tmp_path)), DEV, PREFIX)
    serve_other(stacks, "staging")
    promotion.promote(one(stacks, url, versions["other"], model="other"))
    assert pinned(stacks, "staging", "other") == versions["other"]
    assert pinned(stacks, "staging", "cifar10") is None  # still follows the folder
    copied = keys(client, STAGING)
    assert manifest_key(PREFIX, versions["other"]) in copied
    assert not [k for k in copied if versions["cifar10"] in k]


def test_several_models_are_copied_then_pinned_together(s3, stacks, tmp_path):
    url, client = s3
    versions = publish(client, repository.load(two_models(tmp_path)), DEV, PREFIX)
    serve_other(stacks, "dev")
    serve_other(stacks, "staging")
    (stacks / "Pulumi.dev.yaml").write_text(StackFile.read(stacks, "dev").with_values(
        {promotion.pin_key(model): version for model, version in versions.items()}))
    assert promotion.promote(args(stacks, url, model=list(versions))) == versions
    for model, version in versions.items():
        assert pinned(stacks, "staging", model) == version


def test_prod_takes_only_a_version_pinned_in_the_staging_stack(s3, published, stacks):
    url, _ = s3
    to_prod = dict(source=STAGING, target=PROD, frm="staging", to="prod")
    with pytest.raises(promotion.PromotionError, match="not pinned in Pulumi.staging.yaml"):
        promotion.promote(one(stacks, url, published, **to_prod))
    promotion.promote(one(stacks, url, published))
    promotion.promote(args(stacks, url, model=["cifar10"], **to_prod))  # its pin, no --version
    assert pinned(stacks, "prod") == published


@pytest.mark.parametrize(("frm", "to", "why"), [
    ("dev", "prod", "skips or reverses a stage"),
    ("staging", "dev", "skips or reverses a stage"),
    ("prod", "staging", "skips or reverses a stage"),
    ("dev", "dev-copy", "skips or reverses a stage"),
    ("local", "staging", "no stage: local (local)"),
    ("dev", "local", "no stage: local (local)"),
])
def test_stage_order_holds_for_every_stack_name(s3, stacks, frm, to, why):
    url, client = s3
    shutil.copy(stacks / "Pulumi.dev.yaml", stacks / "Pulumi.dev-copy.yaml")
    with pytest.raises(promotion.PromotionError, match=re.escape(why)):
        promotion.promote(one(stacks, url, "a" * 20, frm=frm, to=to))
    assert keys(client, STAGING) == []


def test_stage_order_comes_from_the_environment_not_the_name(s3, published, stacks):
    url, _ = s3
    shutil.copy(stacks / "Pulumi.dev.yaml", stacks / "Pulumi.team-a.yaml")
    shutil.copy(stacks / "Pulumi.staging.yaml", stacks / "Pulumi.qa.yaml")
    promotion.promote(one(stacks, url, published, frm="team-a", to="qa"))
    assert pinned(stacks, "qa") == published
    with pytest.raises(promotion.PromotionError, match=r"qa \(staging\) -> team-a \(dev\)"):
        promotion.promote(one(stacks, url, published, frm="qa", to="team-a"))


def test_a_model_the_target_does_not_serve_is_refused_before_copying(s3, stacks, tmp_path):
    url, client = s3
    versions = publish(client, repository.load(two_models(tmp_path)), DEV, PREFIX)
    with pytest.raises(promotion.PromotionError, match="no entry for other"):
        promotion.promote(one(stacks, url, versions["other"], model="other"))
    assert keys(client, STAGING) == []


@pytest.mark.parametrize(("extra", "message"), [
    ({"model": None, "version": "a" * 20}, "--version needs exactly one --model"),
    ({"model": ["Bad_Name"], "version": None}, "not a model name"),
    ({"model": ["cifar10"], "version": "not-a-version"}, "is not a model version"),
])
def test_bad_arguments(s3, stacks, extra, message):
    url, _ = s3
    with pytest.raises(promotion.PromotionError, match=message):
        promotion.promote(args(stacks, url, **extra))


def test_unknown_version(s3, stacks):
    url, _ = s3
    with pytest.raises(MissingVersion, match="no such version"):
        promotion.promote(one(stacks, url, "f" * 20))


def test_dry_run_changes_nothing(s3, published, stacks, capsys):
    url, client = s3
    promotion.promote(one(stacks, url, published, dry_run=True))
    assert keys(client, STAGING) == []
    assert pinned(stacks, "staging") is None
    assert (f"pulumi config set --path modelServing.models.cifar10.version {published} --stack "
            "staging" in capsys.readouterr().out)


def test_pinned_stack_file_still_evaluates(s3, published, stacks):
    from tests.harness import encode_config_value, evaluate, stack_config

    url, _ = s3
    promotion.promote(one(stacks, url, published))
    config = stack_config("staging")
    pinned_config = yaml.safe_load((stacks / "Pulumi.staging.yaml").read_text())["config"]
    config["mlserve:modelServing"] = encode_config_value(pinned_config["mlserve:modelServing"])
    graph = evaluate("staging", config=config)
    assert graph.error is None, graph.error
    assert graph.exports["modelVersions"]["cifar10"] == published
    # Pinned: checked in the bucket at `up`, not uploaded from the folder.
    (check,) = graph.of_type("pulumi-python:dynamic:Resource")
    assert check.inputs["action"] == "verify" and check.inputs["version"] == published
    assert not graph.of_type("aws:s3/bucketObjectv2:BucketObjectv2")


# ---- integrity: versions are checked from their bytes, before and after the copy --------------


def test_a_corrupted_object_aborts_and_leaves_the_pin(s3, published, stacks):
    url, client = s3
    client.put_object(Bucket=DEV, Key=object_key(PREFIX, published, "cifar10/labels.txt"),
                      Body=b"tampered")
    with pytest.raises(RegistryError, match="cifar10/labels.txt: SHA-256"):
        promotion.promote(one(stacks, url, published))
    assert pinned(stacks, "staging") is None
    assert keys(client, STAGING) == []


def test_a_manifest_and_object_tampered_together_are_refused(s3, published, stacks):
    """The manifest is rewritten to match a replaced object: each object matches its entry, but
    the version is the content hash of the original files, recomputed here, so it can't pass."""
    url, client = s3
    label_key = object_key(PREFIX, published, "cifar10/labels.txt")
    client.put_object(Bucket=DEV, Key=label_key, Body=b"tampered\n")
    manifest = json.loads(client.get_object(Bucket=DEV, Key=manifest_key(PREFIX, published))[
        "Body"].read())
    import hashlib

    for entry in manifest["files"]:
        if entry["path"] == "cifar10/labels.txt":
            entry.update(sha256=hashlib.sha256(b"tampered\n").hexdigest(), size=9)
    client.put_object(Bucket=DEV, Key=manifest_key(PREFIX, published),
                      Body=manifest_body(manifest))
    with pytest.raises(RegistryError, match=f"hash to [0-9a-f]{{20}}, not to the version "
                                            f"{published}"):
        promotion.promote(one(stacks, url, published))
    assert pinned(stacks, "staging") is None and keys(client, STAGING) == []


def test_a_target_object_altered_before_the_manifest_is_replaced_and_checked(s3, published,
                                                                            stacks):
    url, client = s3
    key = object_key(PREFIX, published, "cifar10/labels.txt")
    client.put_object(Bucket=STAGING, Key=key, Body=b"left behind by someone")
    promotion.promote(one(stacks, url, published))
    assert client.get_object(Bucket=STAGING, Key=key)["Body"].read() == (
        ROOT_DIR / "model_repo/cifar10/labels.txt").read_bytes()


def test_a_copy_that_lands_wrong_bytes_never_gets_a_manifest(s3, published, stacks):
    """Checked after the copy too: a target that ends up different is refused."""
    url, client = s3

    def corrupting_copy(**kwargs):
        client.put_object(Bucket=kwargs["Bucket"], Key=kwargs["Key"], Body=b"garbled")

    with pytest.raises(RegistryError, match="failed verification; the target manifest was not"):
        promotion.promote(one(stacks, url, published), copy_object=corrupting_copy)
    assert manifest_key(PREFIX, published) not in keys(client, STAGING)
    assert pinned(stacks, "staging") is None


def test_interrupted_copy_is_never_usable_and_a_rerun_finishes_it(s3, published, stacks):
    url, client = s3
    calls = []

    def flaky_copy(**kwargs):
        calls.append(kwargs["Key"])
        if len(calls) == 2:
            raise ConnectionError("network dropped mid-copy")
        return client.copy_object(**kwargs)

    with pytest.raises(ConnectionError):
        promotion.promote(one(stacks, url, published), copy_object=flaky_copy)
    assert manifest_key(PREFIX, published) not in keys(client, STAGING)
    assert pinned(stacks, "staging") is None
    promotion.promote(one(stacks, url, published))
    assert manifest_key(PREFIX, published) in keys(client, STAGING)
    assert pinned(stacks, "staging") == published


# ---- the target stack file: compare-and-swap, safe edits -----------------------------------


def test_an_edit_made_during_the_copy_is_kept_and_nothing_is_pinned(s3, published, stacks):
    url, client = s3
    path = stacks / "Pulumi.staging.yaml"
    edited = path.read_text().replace("maxReplicas: 3", "maxReplicas: 5")

    def copy_while_someone_edits(**kwargs):
        path.write_text(edited)
        return client.copy_object(**kwargs)

    with pytest.raises(StackFileError, match="changed while the versions were being copied"):
        promotion.promote(one(stacks, url, published), copy_object=copy_while_someone_edits)
    assert path.read_text() == edited  # the edit survives; no lost update
    assert manifest_key(PREFIX, published) in keys(client, STAGING)  # copy complete, verified
    promotion.promote(one(stacks, url, published))  # a rerun pins on top of the edit
    assert pinned(stacks, "staging") == published
    assert "maxReplicas: 5" in path.read_text()
    assert not list(stacks.glob(".Pulumi.*.tmp"))


def test_concurrent_promotions_never_lose_a_pin(s3, stacks, tmp_path):
    """Two promotions of two models into one stack file at once: each pin lands or its
    promotion fails; a failed one succeeds when run again."""
    url, client = s3
    versions = publish(client, repository.load(two_models(tmp_path)), DEV, PREFIX)
    serve_other(stacks, "staging")
    barrier = threading.Barrier(2)
    errors = []

    def run(model):
        def copy(**kwargs):
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=10)
            return client.copy_object(**kwargs)
        try:
            promotion.promote(one(stacks, url, versions[model], model=model), copy_object=copy)
        except StackFileError as exc:
            errors.append((model, exc))

    threads = [threading.Thread(target=run, args=(m,)) for m in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for model, _ in errors:
        promotion.promote(one(stacks, url, versions[model], model=model))
    for model, version in versions.items():
        assert pinned(stacks, "staging", model) == version


def test_a_stack_file_it_cannot_edit_safely_is_refused_before_copying(s3, published, stacks):
    url, client = s3
    path = stacks / "Pulumi.staging.yaml"
    text = path.read_text()
    start = text.index("  mlserve:modelServing:")
    path.write_text(text[:start] + "  mlserve:modelServing: {models: {cifar10: {gpus: 1}}}\n")
    before = path.read_text()
    with pytest.raises(StackFileError, match="can't set modelServing.models.cifar10.version "
                                             "safely"):
        promotion.promote(one(stacks, url, published))
    assert path.read_text() == before
    assert keys(client, STAGING) == []


def test_the_pin_is_quoted_so_an_all_digit_version_stays_a_string(stacks):
    text = StackFile.read(stacks, "staging").with_values(
        {promotion.pin_key("cifar10"): "01234567890123456789"})
    (stacks / "Pulumi.staging.yaml").write_text(text)
    assert pinned(stacks, "staging") == "01234567890123456789"


def with_prefix(stacks, stack, prefix):
    path = stacks / f"Pulumi.{stack}.yaml"
    path.write_text(path.read_text() + f"  mlserve:modelRepository:\n    prefix: {prefix}\n")


def test_the_prefix_comes_from_the_stack_files(s3, repo, stacks):
    url, client = s3
    version = publish(client, repo, DEV, "team-a/models")["cifar10"]
    for stack in ("dev", "staging"):
        with_prefix(stacks, stack, "team-a/models")
    promotion.promote(one(stacks, url, version))
    expected = [object_key("team-a/models", version, f) for f in repo.models["cifar10"].files]
    assert keys(client, STAGING) == sorted(expected + [manifest_key("team-a/models", version)])
    assert pinned(stacks, "staging") == version


def test_stacks_with_different_prefixes_are_refused_before_copying(s3, published, stacks):
    url, client = s3
    with_prefix(stacks, "staging", "elsewhere")
    with pytest.raises(promotion.PromotionError, match="modelRepository.prefix differs"):
        promotion.promote(one(stacks, url, published))
    assert keys(client, STAGING) == []


# ---- least privilege and two accounts -----------------------------------------------------


def test_a_target_role_without_list_bucket_can_promote(server, s3, published, stacks):
    """S3 answers 403, not 404, for a missing key to a caller without s3:ListBucket: the copy
    treats that as "not copied yet". IAM is enforced by the server; the 403 is S3's rule."""
    from tests.s3_server import allow, s3_semantics_without_list_bucket

    url, admin = s3
    deployer = server.account("123456789012", "staging-deployer", allow(
        ("s3:GetObject", f"arn:aws:s3:::{DEV}/{PREFIX}/*"),
        (["s3:GetObject", "s3:PutObject"], f"arn:aws:s3:::{STAGING}/{PREFIX}/*")))
    target = server.client(**deployer)
    s3_semantics_without_list_bucket(target)
    server.iam_checks(True)
    try:
        with pytest.raises(Exception, match="AccessDenied"):
            target.list_objects_v2(Bucket=STAGING)
        promotion.promote(one(stacks, url, published), source=target, target=target)
        promotion.promote(one(stacks, url, published), source=target, target=target)  # rerun
    finally:
        server.iam_checks(False)
    assert keys(admin, STAGING) == keys(admin, DEV)
    assert pinned(stacks, "staging") == published


def test_cross_account_promotion_with_the_target_accounts_credentials(server, s3, repo, stacks):
    """dev's bucket in one account, staging's in another; staging's deployer reads dev's bucket
    (its own IAM policy names it; moto does not evaluate the bucket policy, which the stack
    renders for `modelBucket.promotionReaders`: tests/components/test_model_store.py)."""
    from tests.s3_server import allow

    url, _ = s3
    dev_admin = server.account("111111111111", "dev-admin", allow(("*", "*")))
    writes_staging = (["s3:GetObject", "s3:PutObject"],
                      f"arn:aws:s3:::team-staging-models/{PREFIX}/*")
    staging = server.account("222222222222", "mlserve-deployer", allow(
        ("s3:GetObject", f"arn:aws:s3:::team-dev-models/{PREFIX}/*"), writes_staging))
    ungranted = server.account("222222222222", "other-role", allow(writes_staging))
    dev_client, staging_client = server.client(**dev_admin), server.client(**staging)
    assert server.client("sts", **staging).get_caller_identity()["Account"] == "222222222222"
    dev_client.create_bucket(Bucket="team-dev-models")
    staging_client.create_bucket(Bucket="team-staging-models")
    version = publish(dev_client, repo, "team-dev-models", PREFIX)["cifar10"]
    to_staging = one(stacks, url, version, source="team-dev-models",
                     target="team-staging-models")
    server.iam_checks(True)
    try:
        other = server.client(**ungranted)
        with pytest.raises(RegistryError, match="s3://team-dev-models/models/manifests/.*: "
                                                "GetObject failed: AccessDenied"):
            promotion.promote(to_staging, source=other, target=other)
        promotion.promote(to_staging, source=staging_client, target=staging_client)
    finally:
        server.iam_checks(False)
    assert manifest_key(PREFIX, version) in keys(staging_client, "team-staging-models")
    assert pinned(stacks, "staging") == version


# ---- the command line ---------------------------------------------------------------------

FAKE_PULUMI = """#!{python}
import json, os, sys
args = sys.argv[1:]
outputs = json.load(open(os.environ["FAKE_OUTPUTS"]))
if args[:2] == ["stack", "output"]:
    value = outputs.get(args[args.index("--stack") + 1], {{}}).get(args[2])
    if value is None:
        sys.exit("error: no output " + args[2])
    print(json.dumps(value))
"""


def fake_pulumi(tmp_path, outputs):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pulumi"
    script.write_text(FAKE_PULUMI.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FAKE_OUTPUTS": str(tmp_path / "outputs.json")}


def cli(module, *argv, env=None):
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT_DIR,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **CREDENTIALS, **(env or {})})


def test_cli_publish_then_promote_what_the_source_stack_serves(s3, stacks, tmp_path):
    url, client = s3
    published = cli("tools.models", "publish", "--bucket", DEV, "--endpoint-url", url,
                    "--no-torch")
    assert published.returncode == 0, published.stderr
    model, version = published.stdout.split()
    assert model == "cifar10"
    env = fake_pulumi(tmp_path, {
        "dev": {"modelVersions": {"cifar10": version}, "modelBucketName": DEV},
        "staging": {"modelBucketName": STAGING}})
    promoted = cli("tools.promote", "--from", "dev", "--to", "staging", "--endpoint-url", url,
                   "--stack-dir", str(stacks), env=env)
    assert promoted.returncode == 0, promoted.stderr
    assert f"pinned in Pulumi.staging.yaml: cifar10 {version}" in promoted.stdout
    assert pinned(stacks, "staging") == version
    hashed = cli("tools.models", "hash", "--model", "cifar10")
    assert hashed.stdout.strip() == version


def test_cli_failures_are_one_line_and_exit_1(s3, published, stacks):
    url, _ = s3
    common = ["--from", "dev", "--to", "staging", "--model", "cifar10", "--endpoint-url", url,
              "--stack-dir", str(stacks)]
    for argv, expected in (
            (["--version", "e" * 20, "--source-bucket", DEV, "--target-bucket", STAGING],
             f"s3://{DEV}/{PREFIX}/manifests/{'e' * 20}.json: no such version"),
            (["--version", published, "--source-bucket", "no-such-bucket", "--target-bucket",
              STAGING], f"s3://no-such-bucket/{manifest_key(PREFIX, published)}: GetObject "
                        "failed: NoSuchBucket"),
            (["--version", published, "--source-bucket", DEV, "--target-bucket",
              "no-such-target"], "s3://no-such-target/models/"),
            (["--version", published, "--source-bucket", DEV, "--target-bucket", STAGING,
              "--target-profile", "nobody"], "AWS profile nobody: creating an S3 client failed: "
                                             "ProfileNotFound"),
            (["--source-bucket", DEV, "--target-bucket", STAGING],
             "can't read the `modelVersions` output of stack dev: the pulumi CLI")):
        result = cli("tools.promote", *common, *argv,
                     env={"PATH": os.path.dirname(sys.executable)})
        assert result.returncode == 1, (argv, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("promote: ") and expected in line, line
    assert pinned(stacks, "staging") is None
