"""Native, out-of-process load for the benchmark: wrk (C, one epoll thread) with wrk_infer.lua.

Closed loop: each of N connections sends its next request as soon as the last one is answered,
all with the same body. Two bodies are measured separately:

- `binary`: Triton's binary-tensor extension (what tritonclient sends with binary_data=True),
  the output requested as binary too;
- `json`: byte for byte what the original tutorial's locust client posts (`requests`'
  `json=` of a nested 1x3x32x32 list of ints, UINT8).

The client runs in its own process and its CPU time is read from the kernel (rusage of the
child), next to the server's (its process group, from /proc) and everything else's (/proc/stat),
so every result says how much of the machine the client and the neighbours took.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.models.serve import processes

WRK_SCRIPT = Path(__file__).parent / "wrk_infer.lua"
WRK_TIMEOUT_S = 10
"""Per request: a request unanswered this long counts as an error, never as a latency."""
CLIENT_THREADS = 1
"""One epoll thread carries tens of thousands of small requests a second; fewer threads leave
more of the machine to the server."""

_RESULT = re.compile(r"^wrk-result (.*)$", re.MULTILINE)


class LoadGeneratorError(RuntimeError):
    pass


@dataclass(frozen=True)
class Body:
    """One request body and the headers that go with it."""

    format: str
    content: bytes
    content_type: str
    inference_header_length: int | None = None
    """Inference-Header-Content-Length: the JSON part of a binary-extension body."""

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": self.content_type}
        if self.inference_header_length is not None:
            headers["Inference-Header-Content-Length"] = str(self.inference_header_length)
        return headers


def binary_body(image: np.ndarray, input_name: str = "image__0",
                output_name: str = "probs__0") -> Body:
    header = json.dumps({
        "inputs": [{"name": input_name, "shape": list(image.shape), "datatype": "UINT8",
                    "parameters": {"binary_data_size": image.nbytes}}],
        "outputs": [{"name": output_name, "parameters": {"binary_data": True}}],
    }, separators=(",", ":")).encode()
    return Body("binary", header + np.ascontiguousarray(image, dtype=np.uint8).tobytes(),
                "application/octet-stream", len(header))


def tutorial_json_body(image: np.ndarray, input_name: str = "image__0") -> Body:
    """The tutorial client's payload: `requests.post(url, json=payload)` serialises with
    json.dumps' default separators, keys in this order, `data` as a nested list."""
    payload = {"inputs": [{"name": input_name, "datatype": "UINT8", "shape": list(image.shape),
                           "data": image.tolist()}]}
    return Body("json", json.dumps(payload).encode(), "application/json")


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise LoadGeneratorError(
            "wrk is not installed: `make bench` (and `make test`) install it with apt-get on "
            "Debian/Ubuntu; elsewhere install it with your package manager (e.g. brew install wrk)")
    return path


# ---- CPU accounting (Linux /proc; None elsewhere) ----

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent on anything but idle/iowait since boot (steal included:
    time the hypervisor gave to someone else is time we did not get)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


def process_group_seconds(pgid: int) -> float | None:
    """User+system CPU seconds of every live process in a process group."""
    if not Path("/proc/self/stat").exists():
        return None
    return sum(p.cpu_seconds for p in processes() if p.pgid == pgid)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class LoadResult:
    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: Mapping[str, int]
    """Socket errors, non-2xx answers and timeouts, by kind; all zero in a valid result."""
    client_cores: float | None
    """The load generator's CPU time over the wall time (1.0 = one core busy)."""
    server_cores: float | None
    other_cores: float | None
    """Everything else on the machine meanwhile: other people's work, the kernel."""

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def parse_wrk_output(output: str) -> dict[str, int]:
    match = _RESULT.search(output)
    if match is None:
        raise LoadGeneratorError(f"wrk printed no result line:\n{output[-2000:]}")
    return {key: int(value) for key, value in
            (item.split("=", 1) for item in match[1].split())}


def run_wrk(url: str, body_file: Path, body: Body, connections: int, seconds: float, *,
            server_pgid: int | None = None,
            on_start: Callable[[subprocess.Popen], None] | None = None) -> LoadResult:
    """One closed-loop run of `connections` connections for `seconds` against `url`."""
    command = [wrk_path(), f"--threads={min(CLIENT_THREADS, connections)}",
               f"--connections={connections}", f"--duration={max(1, round(seconds))}s",
               f"--timeout={WRK_TIMEOUT_S}s", "--script", str(WRK_SCRIPT), url, "--",
               str(body_file), body.content_type,
               "" if body.inference_header_length is None else str(body.inference_header_length)]
    with tempfile.TemporaryFile() as output:
        busy_before = machine_busy_seconds()
        server_before = process_group_seconds(server_pgid) if server_pgid else None
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        # wrk stops itself after --duration; the watchdog only covers a hung client.
        watchdog = threading.Timer(seconds + WRK_TIMEOUT_S + 30, _kill_group, (process.pid,))
        watchdog.start()
        try:
            if on_start is not None:
                on_start(process)
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        finally:
            watchdog.cancel()
            if process.returncode is None:
                _kill_group(process.pid)
                process.wait(10)
        wall = time.monotonic() - started
        busy_after = machine_busy_seconds()
        server_after = process_group_seconds(server_pgid) if server_pgid else None
        output.seek(0)
        text = output.read().decode(errors="replace")
    if process.returncode != 0:
        raise LoadGeneratorError(f"wrk exited with {process.returncode}:\n{text[-2000:]}")
    values = parse_wrk_output(text)
    client = usage.ru_utime + usage.ru_stime
    server = (server_after - server_before
              if server_before is not None and server_after is not None else None)
    other = None
    if busy_before is not None and busy_after is not None and server is not None:
        other = max(0.0, busy_after - busy_before - server - client) / wall
    return LoadResult(
        connections=connections, requests=values["requests"],
        seconds=values["duration_us"] / 1e6,
        p50_ms=values["p50_us"] / 1000, p95_ms=values["p95_us"] / 1000,
        p99_ms=values["p99_us"] / 1000, max_ms=values["max_us"] / 1000,
        errors={kind: values[kind] for kind in ("connect_errors", "read_errors", "write_errors",
                                                "status_errors", "timeouts")},
        client_cores=client / wall, server_cores=None if server is None else server / wall,
        other_cores=other)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
