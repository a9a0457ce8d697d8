"""The Makefile's cloud commands, with a stand-in `pulumi` on PATH that records its calls."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from tests.harness import ROOT_DIR

FAKE_PULUMI = """#!/bin/sh
echo "$* | backend=${PULUMI_BACKEND_URL:-}" >> "$FAKE_PULUMI_LOG"
case "$1" in
  whoami) [ -n "$FAKE_LOGGED_IN" ] && echo someone && exit 0; echo "not logged in" >&2; exit 255;;
  stack)
    if [ "$2" = "output" ]; then cat "$FAKE_OUTPUTS"; fi;;
esac
exit 0
"""


def fake_pulumi(tmp_path: Path, outputs: dict | None = None, logged_in: bool = False) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pulumi"
    script.write_text(FAKE_PULUMI)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "outputs.json").write_text(json.dumps(outputs or {}))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "FAKE_PULUMI_LOG": str(tmp_path / "calls.log"),
           "FAKE_OUTPUTS": str(tmp_path / "outputs.json"),
           "FAKE_LOGGED_IN": "1" if logged_in else ""}
    env.pop("PULUMI_BACKEND_URL", None)
    return env


def make(target: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", target, *args], cwd=ROOT_DIR, env=env,
                          capture_output=True, text=True, timeout=300)


def installed_policy_venv(tmp_path) -> str:
    """A policy environment make considers up to date, so the tests don't install pulumi-policy."""
    marker = tmp_path / "policy-venv" / ".installed"
    marker.parent.mkdir()
    marker.touch()
    return f"POLICY_VENV={marker.parent}"


def test_make_up_uses_local_state_when_not_logged_in(tmp_path):
    env = fake_pulumi(tmp_path)
    result = make("up", env, "STACK=dev", installed_policy_venv(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    backend = f"file://{ROOT_DIR}/.pulumi-state"
    assert f"stack select --create dev | backend={backend}" in calls
    assert f"up --stack dev --policy-pack policy | backend={backend}" in calls
    assert "using local state in .pulumi-state" in result.stderr


def test_make_up_keeps_the_logged_in_backend(tmp_path):
    env = fake_pulumi(tmp_path, logged_in=True)
    result = make("up", env, "STACK=staging", installed_policy_venv(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert "up --stack staging --policy-pack policy | backend=" in calls


def test_make_smoke_reads_the_stack_outputs(tmp_path, local_triton):
    outputs = {"cifar10": {"url": f"{local_triton.url}/v2/models/cifar10/infer",
                           "host": "cifar10-models.example.com"}}
    env = fake_pulumi(tmp_path, outputs={**outputs}, logged_in=True)
    result = make("smoke", env, "STACK=dev")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smoke: all checks passed" in result.stdout
    assert "stack output models --json --stack dev" in (tmp_path / "calls.log").read_text()
