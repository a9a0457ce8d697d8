"""tools/smoke.py and tools/load against the real local Triton."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

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
    assert_locust_served_without_failures(result)


def assert_locust_served_without_failures(result: subprocess.CompletedProcess) -> None:
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


# ---- waiting for readiness ----------------------------------------------------------------------

class FakeClock:
    """Time that passes only when the code under test sleeps (or a request takes `cost`)."""

    def __init__(self, cost: float = 0.0):
        self.now, self.cost, self.sleeps = 0.0, cost, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_backs_off_and_gives_up_at_the_deadline():
    clock = FakeClock()
    endpoint = smoke.Endpoint("cifar10", "http://127.0.0.1:9", None)  # nothing listens
    result = smoke.wait_until_ready(endpoint, 20, clock=clock, sleep=clock.sleep)
    assert result.ready is False
    assert clock.sleeps == [0.5, 1, 2, 4, 8, 4.5]  # doubling, cut at the deadline
    assert result.attempts == 7 and result.seconds == 20
    assert "refused" in result.last.lower()


@pytest.fixture
def flaky_server():
    """A V2 endpoint that answers 503 to its first three ready checks, then 200."""
    calls = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            calls.append((self.path, self.headers.get("Host")))
            self.send_response(200 if len(calls) > 3 else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", calls
    finally:
        server.shutdown()
        server.server_close()


def test_wait_reports_the_time_to_the_first_200(flaky_server):
    url, calls = flaky_server
    clock = FakeClock()
    endpoint = smoke.Endpoint("cifar10", url, "cifar10-models.example.com")
    result = smoke.wait_until_ready(endpoint, 60, clock=clock, sleep=clock.sleep)
    assert result.ready and result.attempts == 4 and result.seconds == 0.5 + 1 + 2
    assert calls == [("/v2/models/cifar10/ready", "cifar10-models.example.com")] * 4


def test_smoke_waits_then_checks_and_prints_the_time(local_triton, capsys):
    endpoint = smoke.Endpoint("cifar10", local_triton.url, None)
    assert smoke.run([endpoint], wait=30) is True
    out = capsys.readouterr().out
    assert "PASS  ready: first 200 after " in out and "PASS  inference" in out


def test_smoke_fails_when_never_ready(capsys):
    assert smoke.run([smoke.Endpoint("cifar10", "http://127.0.0.1:9", None)], wait=1) is False
    assert "FAIL  ready: no 200 within 1 s" in capsys.readouterr().out


# ---- the Makefile against a local server, without the Pulumi CLI -------------------------------

def _without_pulumi() -> dict:
    path = [d for d in os.environ["PATH"].split(os.pathsep)
            if d and not (Path(d) / "pulumi").exists()]
    env = {**os.environ, "PATH": os.pathsep.join(path)}
    assert shutil.which("pulumi", path=env["PATH"]) is None
    return env


def test_make_smoke_with_url_needs_no_pulumi_cli(local_triton):
    result = subprocess.run(["make", "--no-print-directory", "smoke", f"URL={local_triton.url}"],
                            cwd=ROOT_DIR, env=_without_pulumi(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS  ready: first 200 after" in result.stdout
    assert "smoke: all checks passed" in result.stdout


def test_make_load_with_url_needs_no_pulumi_cli(local_triton):
    result = subprocess.run(["make", "--no-print-directory", "load", f"URL={local_triton.url}",
                             "USERS=2", "SPAWN=2", "DURATION=3s"],
                            cwd=ROOT_DIR, env=_without_pulumi(), capture_output=True, text=True,
                            timeout=300)
    assert_locust_served_without_failures(result)
