"""`make serve` (python -m tools.models serve) on free ports, for the tests that drive it."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.harness import ROOT_DIR
from tools.models.serve import end_process_group, free_ports, processes

SERVER_COMMAND = "tritonserver"


@dataclass
class ServeCli:
    process: subprocess.Popen
    http_port: int
    banner: str
    """What it printed up to "Ctrl-C to stop" (or until it exited or the deadline passed)."""
    output: queue.Queue = field(default_factory=queue.Queue)
    """Its later lines, read by a thread (a blocking readline can't keep a deadline)."""
    server_groups: list[int] = field(default_factory=list)
    """Process groups of the tritonservers it started (each in its own session, so a signal to
    the CLI's group does not reach them)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def rest(self, timeout: float) -> str:
        """Waits for the CLI to exit; what it printed after the banner."""
        self.process.wait(timeout)
        lines = []
        while (line := self.output.get(timeout=10)) is not None:
            lines.append(line)
        return "".join(lines)


def server_groups_of(pid: int) -> list[int]:
    return [p.pgid for p in processes() if p.ppid == pid and p.command == SERVER_COMMAND]


@contextmanager
def serve_cli(timeout: float = 120) -> Iterator[ServeCli]:
    """Started; on the way out, whether the test passed or failed, the CLI gets Ctrl-C (SIGKILL if
    it does not stop) and every tritonserver it started is gone, stubs included."""
    http, grpc, metrics = free_ports(3)
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.models", "serve", f"--http-port={http}",
         f"--grpc-port={grpc}", f"--metrics-port={metrics}"],
        cwd=ROOT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    cli = ServeCli(process, http, "")
    groups: set[int] = set()
    try:
        reader = threading.Thread(target=_read_lines, args=(process, cli.output), daemon=True)
        reader.start()
        lines = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            groups.update(server_groups_of(process.pid))
            try:
                line = cli.output.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:  # exited
                cli.output.put(None)
                break
            lines.append(line)
            if "Ctrl-C to stop" in line:
                break
        groups.update(server_groups_of(process.pid))
        cli.banner, cli.server_groups = "".join(lines), sorted(groups)
        yield cli
    finally:
        if process.poll() is None:
            groups.update(server_groups_of(process.pid))
            os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: Triton drains, stops
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        for group in sorted(groups):
            end_process_group(group)


def _read_lines(process: subprocess.Popen, lines: queue.Queue) -> None:
    for line in process.stdout:
        lines.put(line)
    lines.put(None)
