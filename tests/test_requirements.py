"""requirements.txt holds everything the program and its dynamic provider import at deploy time.

A plain `pulumi up` installs requirements.txt and nothing else (Pulumi.yaml `toolchain: pip`,
`virtualenv: .venv`), and starts the dynamic provider host from that virtualenv
(sdk/python/dist/pulumi-resource-pulumi-python). So: build a virtualenv from requirements.txt
alone (offline, from the wheels `make venv` downloaded into .venv/wheelhouse), evaluate every
stack in it, and drive the model-version provider through `python -m pulumi.dynamic` of that
virtualenv against a real S3 API server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from modelrepo import repository
from tests.deploy_probe import EXISTING_BUCKET
from tests.dynamic_host import DynamicProviderHost, model_version_lifecycle
from tests.harness import ROOT_DIR
from tests.s3_server import CREDENTIALS, moto_server

WHEELHOUSE = ROOT_DIR / ".venv" / "wheelhouse"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would let the test's own packages leak in."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def deploy_python(tmp_path_factory):
    if not any(WHEELHOUSE.glob("*.whl")):
        pytest.fail(f"{WHEELHOUSE.relative_to(ROOT_DIR)} is empty: run `make venv` (it "
                    "downloads requirements.txt's wheels there)")
    venv = tmp_path_factory.mktemp("deploy") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = str(venv / "bin" / "python")
    # No index, only the wheelhouse, no bytecode compilation: offline and quick.
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-index",
         "--find-links", str(WHEELHOUSE), "--no-compile", "--disable-pip-version-check",
         "-r", str(ROOT_DIR / "requirements.txt")],
        capture_output=True, text=True, timeout=600, env=clean_env())
    assert installed.returncode == 0, installed.stderr[-3000:]
    return python


def test_the_virtualenv_has_requirements_txt_only(deploy_python):
    found = subprocess.run(
        [deploy_python, "-c", "import importlib.util as u, json; print(json.dumps({m: "
         "u.find_spec(m) is not None for m in ('pulumi', 'boto3', 'moto', 'pytest', "
         "'torch')}))"], capture_output=True, text=True, timeout=120, env=clean_env())
    assert json.loads(found.stdout) == {"pulumi": True, "boto3": True, "moto": False,
                                        "pytest": False, "torch": False}


def test_program_and_upload_provider_run_from_requirements_txt_alone(deploy_python):
    version = repository.load(ROOT_DIR / "model_repo").models["cifar10"].content_hash
    with moto_server() as server:
        server.reset()
        client = server.client()
        for bucket in ("models", EXISTING_BUCKET["name"]):
            client.create_bucket(Bucket=bucket)
        probe = subprocess.run(
            [deploy_python, "-m", "tests.deploy_probe", "--endpoint", server.url, "--pinned",
             version], cwd=ROOT_DIR, capture_output=True, text=True, timeout=600,
            env=clean_env())
        assert probe.returncode == 0, probe.stderr[-3000:]
        resources = json.loads(probe.stdout)
        env = clean_env(**CREDENTIALS, AWS_ENDPOINT_URL_S3=server.url)
        with DynamicProviderHost(deploy_python, env) as host:
            model_version_lifecycle(host, client, resources)
