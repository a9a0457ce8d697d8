"""tools/smoke.py and tools/load against the real local Triton."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import ROOT_DIR
from tools import smoke


def test_smoke_passes_against_a_live_server(local_triton, capsys):
    endpoint = smoke.Endpoint("cifar10", local_triton.url, "cifar10-models.example.com")
    assert smoke.run([endpoint]) is True
    out = capsys.readouterr().out
    for check in ("/v2/health/live", "/v2/health/ready", "/v2/models/cifar10/ready",
                  "metadata", "inference"):
        assert f"PASS  {check}" in out
    assert "smoke: all checks passed" in out


def test_smoke_fails_clearly(local_triton, capsys):
    assert smoke.run([smoke.Endpoint("nonexistent", local_triton.url, None)]) is False
    out = capsys.readouterr().out
    assert "FAIL  /v2/models/nonexistent/ready: HTTP 400" in out or \
        "FAIL  /v2/models/nonexistent/ready" in out
    assert "smoke: FAILED" in out
    assert smoke.run([smoke.Endpoint("cifar10", "http://127.0.0.1:9", None)]) is False


def test_smoke_cli_with_url_and_host(local_triton):
    result = subprocess.run([sys.executable, "-m", "tools.smoke", "--url", local_triton.url,
                             "--host", "cifar10-models.example.com"], cwd=ROOT_DIR,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS  inference" in result.stdout


def test_locust_scenario_runs_headless_against_the_server(local_triton):
    result = subprocess.run([sys.executable, "-m", "tools.load", "--url", local_triton.url,
                             "--users", "4", "--spawn", "4", "--duration", "4s"],
                            cwd=ROOT_DIR, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    row = next(line for line in output.splitlines() if "/v2/models/cifar10/infer" in line
               and "POST" in line)
    requests, failures = (int(v.split("(")[0]) for v in row.split()[2:4])
    assert requests > 0 and failures == 0, row


def test_load_from_a_stack_keeps_the_scheme_and_the_seldon_path(monkeypatch):
    from tools.load import __main__ as load

    runs = []
    endpoint = smoke.Endpoint(model="cifar10", base="https://nlb.example.com/seldon/models/cifar10",
                              host=None)
    monkeypatch.setattr(load, "endpoints_from_stack", lambda stack: [endpoint])
    monkeypatch.setattr(load.subprocess, "run",
                        lambda cmd, env: runs.append((cmd, env)) or subprocess.CompletedProcess(cmd, 0))
    assert load.main(["--stack", "dev", "--duration", "1s"]) == 0
    command, env = runs[0]
    assert command[command.index("-H") + 1] == "https://nlb.example.com"
    assert env["PATH_PREFIX"] == "/seldon/models/cifar10"
