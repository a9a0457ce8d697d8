"""`make serve` (python -m tools.models serve) on free ports, for the tests that drive it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.harness import ROOT_DIR
from tools.models.serve import free_ports


@dataclass
class ServeCli:
    process: subprocess.Popen
    http_port: int
    banner: str
    """What it printed up to "Ctrl-C to stop" (or until it exited)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@contextmanager
def serve_cli(timeout: float = 120) -> Iterator[ServeCli]:
    """Started, and killed on the way out if the test did not stop it."""
    http, grpc, metrics = free_ports(3)
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.models", "serve", f"--http-port={http}",
         f"--grpc-port={grpc}", f"--metrics-port={metrics}"],
        cwd=ROOT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        lines = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "Ctrl-C to stop" in line or process.poll() is not None:
                break
        yield ServeCli(process, http, "".join(lines))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: Triton drains, stops
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
