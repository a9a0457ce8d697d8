"""A test that fails while a tritonserver runs leaves nothing behind: the server, its python
stubs, and for `make serve` the CLI too, are gone when pytest reports the failure, also when
the CLI died first and left its server orphaned.

Proved on real failures: pytest runs, in a child process, tests that start a server the ways the
suite does (a fixture around TritonServer, the `make serve` helper) and then fail.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.harness import ROOT_DIR
from tools.models.serve import group_members, processes

FAILING_TESTS = '''
import os
import signal
from pathlib import Path

import pytest

from tests.harness import ROOT_DIR
from tests.tools.models.serve_cli import serve_cli
from modelrepo import repository
from tools.models.serve import TritonServer, write_twins

RECORD = Path(os.environ["SERVER_GROUPS_RECORD"])


def record(kind, group):
    with RECORD.open("a") as out:
        out.write(f"{kind} {group}\\n")


@pytest.fixture
def server(tmp_path):
    twins = write_twins(repository.load(ROOT_DIR / "model_repo"), tmp_path / "repo")
    with TritonServer(str(twins)) as server:
        yield server


def test_fails_while_a_fixture_server_runs(server):
    record("fixture", server.pid)
    assert False, "fails on purpose"


def test_fails_while_make_serve_runs():
    with serve_cli() as cli:
        record("cli", cli.process.pid)
        for group in cli.server_groups:
            record("make-serve", group)
        raise RuntimeError("fails on purpose")


def test_fails_after_make_serve_died():
    # The CLI is gone without stopping its server (killed, crashed): the server is orphaned in
    # its own session, out of reach of a signal to the CLI's process group.
    with serve_cli() as cli:
        record("dead-cli", cli.process.pid)
        for group in cli.server_groups:
            record("orphaned", group)
        os.kill(cli.process.pid, signal.SIGKILL)
        cli.process.wait(10)
        assert False, "fails on purpose"
'''


def test_failing_tests_leave_no_tritonserver_behind(tmp_path):
    failing = tmp_path / "test_fails_on_purpose.py"
    failing.write_text(FAILING_TESTS)
    record = tmp_path / "groups"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(failing)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "SERVER_GROUPS_RECORD": str(record),
             "PYTHONPATH": os.pathsep.join([str(ROOT_DIR), os.environ.get("PYTHONPATH", "")])})
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "3 failed" in output, output
    assert "fails on purpose" in output, output
    recorded = [line.split() for line in record.read_text().splitlines()]
    assert sorted(kind for kind, _ in recorded) == [
        "cli", "dead-cli", "fixture", "make-serve", "orphaned"], recorded
    for kind, group in recorded:
        assert group_members(int(group)) == [], f"{kind}: process group {group} still running"
    servers = [p for p in processes() if p.command == "tritonserver" and str(tmp_path) in
               _command_line(p.pid)]
    assert servers == [], servers


def _command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
