"""A real Triton server on loopback, for model authors and tests (CPU, python backend).

The `nvidia-pytriton` wheel ships a `tritonserver` binary with the python backend only, so each
model is served through a python-backend twin: same name, tensors and batching, whose model.py
runs the model's TorchScript. Twins are generated into a temporary folder, never into
model_repo/. The binary's environment (backend directory, the python stub for this interpreter,
library path, PATH) is set up here, not in the user's shell.
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ClassVar

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from modelrepo.repository import CONFIG_FILE, CUSTOM_CONFIGS, Repository
from modelrepo.triton import METRICS_ARGS, READY_PATH

TWIN_MODEL = Path(__file__).parent / "twin_model.py"
NOOP_MODEL = Path(__file__).parent / "noop_model.py"
LOOPBACK = "127.0.0.1"
THREADS_PARAMETER = "torch_threads"  # read by twin_model.py
JEMALLOC = "jemalloc"
"""Debian's libjemalloc2. Triton's docs suggest tcmalloc or jemalloc through LD_PRELOAD for the
server (docs/user_guide/model_management.md, "Model control mode EXPLICIT"; both are installed in
the Triton container): glibc's malloc returns the forward pass's large, short-lived buffers to
the kernel and faults them back in on the next batch."""


HOST_POLICY_PREFIX = "core"
"""Host policies `core<N>` pin to CPU core N. Triton pins the thread that initializes an instance
with its group's host policy before calling the backend (core src/backend_model_instance.cc:235,
r24.10; src/numa_utils.cc:226 pthread_setaffinity_np) and its backend thread before it executes
(same file :594-595). The python backend starts the instance's stub from that thread with
fork/exec (python_backend src/stub_launcher.cc:331-420, r24.10), and Linux keeps a thread's CPU
affinity across fork and exec (sched_setaffinity(2)), so stub and backend thread share the core.
tests/tools/models/test_serve.py checks this on the running server."""


class ServerSetupError(RuntimeError):
    pass


def usable_cores() -> list[int]:
    """The CPU cores this process may run on (its affinity mask, e.g. a container's cpuset)."""
    return sorted(os.sched_getaffinity(0))


def preload_library(allocator: str) -> str:
    """The soname to put in LD_PRELOAD (the dynamic loader finds it in the system's paths)."""
    found = ctypes.util.find_library(allocator)
    if found is None:
        raise ServerSetupError(
            f"lib{allocator} is not installed: `make serve`, `make bench` and `make test` install "
            f"it with apt-get (Debian/Ubuntu package lib{allocator}2); elsewhere install it with "
            f"your package manager")
    return found


@dataclass(frozen=True)
class TwinSettings:
    """How the local python-backend twin and its server run. Local-only: none of this reaches the
    cluster, where the libtorch backend runs the TorchScript in Triton's own process (no stub, no
    IPC) with the instance_group of config.pbtxt. The defaults are Triton's own (what the
    tutorial's deployment got); SHIPPED_TWIN is what `make serve` and `make bench` run."""

    instances: int = 1
    """Stub processes per model. One is Triton's default for the pytorch backend on CPU
    (core src/model_config_utils.cc, SetDefaultInstanceCount, r24.10), so the tutorial's config
    gets it too."""
    torch_threads: int = 1
    """Intra-op threads of each instance's forward pass."""
    model_py: Path = TWIN_MODEL
    """What each instance runs (the benchmark swaps in NOOP_MODEL)."""
    allocator: str | None = None
    """malloc replacement preloaded into the server and its stubs (None: glibc's)."""
    http_threads: int | None = None
    """tritonserver --http-thread-count (None: Triton's default, 8)."""
    pin_instances: bool = False
    """Pin each instance to one CPU core with a Triton host policy, cores taken round-robin from
    those this process may run on (False: Triton's default, no affinity). The instance's
    backend thread and the python stub it starts then pass every batch back and forth on one
    core instead of waking each other across cores (see HOST_POLICY_PREFIX)."""

    def describe(self) -> str:
        return (f"{self.instances} instance(s) x {self.torch_threads} torch thread(s)"
                f"{self.describe_pinning()}, {self.allocator or 'glibc'} malloc, "
                f"{self.http_threads or 'default (8)'} HTTP threads"
                + ("" if self.model_py == TWIN_MODEL else f", {self.model_py.name}"))

    def describe_pinning(self) -> str:
        if not self.pin_instances:
            return ""
        return f" pinned to core(s) {','.join(map(str, self.instance_cores()))}"

    def instance_cores(self, first: int = 0) -> list[int]:
        """The core of each instance of a model whose instances start at position `first` of
        the usable cores (round-robin, so several models spread over the machine)."""
        cores = usable_cores()
        return [cores[(first + i) % len(cores)] for i in range(self.instances)]

    def server_env(self) -> dict[str, str]:
        """Environment for tritonserver (its python stubs inherit it)."""
        if self.allocator is None:
            return {}
        preload = [preload_library(self.allocator), os.environ.get("LD_PRELOAD", "")]
        return {"LD_PRELOAD": ":".join(p for p in preload if p)}

    def server_args(self) -> tuple[str, ...]:
        threads = () if self.http_threads is None else (
            f"--http-thread-count={self.http_threads}",)
        # One policy per usable core; the twin's instance groups name theirs (twin_config).
        policies = tuple(f"--host-policy={HOST_POLICY_PREFIX}{core},cpu-cores={core}-{core}"
                         for core in usable_cores()) if self.pin_instances else ()
        return threads + policies

    def __post_init__(self) -> None:
        if self.instances < 1 or self.torch_threads < 1 or (self.http_threads or 1) < 1:
            raise ValueError(f"twin instances, torch_threads and http_threads must be >= 1, "
                             f"got {self}")


SHIPPED_TWIN = TwinSettings(allocator=JEMALLOC, http_threads=2, pin_instances=True)
"""What `make serve` runs and `make bench` measures as "shipped": one instance with one torch
thread pinned to a core, jemalloc, two HTTP threads (measured alternatives: docs/models.md,
"Performance")."""


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports: all sockets stay bound until every port is chosen, so the
    kernel can't hand the same one out twice."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    pgid: int
    state: str
    command: str
    cpu_seconds: float
    """User + system time so far."""


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def processes() -> Iterator[ProcessInfo]:
    """Every process on the machine, from /proc (Linux; nothing elsewhere)."""
    if not Path("/proc/self/stat").exists():
        return
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        command = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()  # proc(5): fields from 3 (state) on
        yield ProcessInfo(int(entry.name), int(fields[1]), int(fields[2]), fields[0], command,
                          (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    return [p.pid for p in processes() if p.pgid == pgid and p.state != "Z"]


def end_process_group(pgid: int, grace: float = 5.0) -> None:
    """Wait up to `grace` seconds for a process group to empty, then SIGKILL what is left and
    wait for it to go. Raises if anything survives SIGKILL."""
    deadline = time.monotonic() + grace
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_members(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while (left := group_members(pgid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if left:
            raise RuntimeError(f"process group {pgid} survived SIGKILL: {left}")


def _pytriton_server_dir() -> Path:
    import pytriton

    return Path(pytriton.__file__).parent / "tritonserver"


def prepare_backends(workdir: Path) -> Path:
    """A backend directory with the python backend and the stub built for this interpreter."""
    source = _pytriton_server_dir()
    backends = workdir / "backends"
    shutil.copytree(source / "backends", backends, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise RuntimeError(f"nvidia-pytriton has no python backend stub for Python {version}")
    shutil.copy2(stub, backends / "python" / stub.name)
    return backends


def server_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    site = Path(_pytriton_server_dir()).parent.parent
    # This interpreter's libpython first: otherwise the stub can load another libpython and crash.
    libdirs = [sysconfig.get_config_var("LIBDIR"), str(site / "nvidia_pytriton.libs")]
    if env.get("LD_LIBRARY_PATH"):
        libdirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(libdirs)
    # The stub runs `python` from PATH: it must be this environment's, with torch in it.
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def twin_config(config: mc.ModelConfig, settings: TwinSettings = TwinSettings(),
                first_core: int = 0) -> mc.ModelConfig:
    twin = mc.ModelConfig()
    twin.CopyFrom(config)
    twin.platform = ""
    twin.backend = "python"
    twin.default_model_filename = ""
    del twin.instance_group[:]
    if settings.pin_instances:  # a group per instance: a group has one host policy
        for core in settings.instance_cores(first_core):
            twin.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1,
                                    host_policy=f"{HOST_POLICY_PREFIX}{core}")
    else:
        twin.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=settings.instances)
    twin.parameters[THREADS_PARAMETER].string_value = str(settings.torch_threads)
    return twin


def write_twin(name: str, config: mc.ModelConfig, model_dir: Path, out: Path,
               settings: TwinSettings = TwinSettings(), first_core: int = 0) -> None:
    """Twin of one model: config for the python backend, model.py, and the TorchScript beside it.
    With pinned instances, the model's instances take the usable cores from position `first_core` on."""
    target = out / name
    target.mkdir(parents=True, exist_ok=True)
    twin = twin_config(config, settings, first_core)
    twin.name = name
    (target / CONFIG_FILE).write_text(text_format.MessageToString(twin))
    for entry in model_dir.iterdir():
        if entry.is_file() and entry.name != CONFIG_FILE:
            shutil.copy2(entry, target / entry.name)  # labels
    for custom in sorted((model_dir / CUSTOM_CONFIGS).glob("*.pbtxt")):
        # Alternative configs (tritonserver --model-config-name) get their twins too.
        alternative = mc.ModelConfig()
        text_format.Parse(custom.read_text(), alternative)
        twin_alternative = twin_config(alternative, settings, first_core)
        twin_alternative.name = name
        (target / CUSTOM_CONFIGS).mkdir(exist_ok=True)
        (target / CUSTOM_CONFIGS / custom.name).write_text(
            text_format.MessageToString(twin_alternative))
    model_file = config.default_model_filename or "model.pt"
    for version in (v for v in model_dir.iterdir() if v.is_dir() and v.name.isdigit()):
        (target / version.name).mkdir(exist_ok=True)
        shutil.copy2(version / model_file, target / version.name / "model.pt")
        shutil.copy2(settings.model_py, target / version.name / "model.py")


def write_twins(repository: Repository, out: Path, settings: TwinSettings = TwinSettings()
                ) -> Path:
    for index, model in enumerate(repository.models.values()):
        write_twin(model.name, model.config, model.path, out, settings,
                   first_core=index * settings.instances)
    return out


@dataclass
class TritonServer:
    """`tritonserver` on loopback; a context manager that always stops it."""

    model_repository: str
    """A folder, or s3://http://127.0.0.1:PORT/bucket/prefix."""
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    """0: a free port, chosen when the server starts."""
    env: Mapping[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()
    log_path: Path | None = None
    _process: subprocess.Popen | None = None
    _workdir: tempfile.TemporaryDirectory | None = None
    running: ClassVar[set[int]] = set()
    """PIDs of servers started and not yet stopped (tests check it ends empty)."""

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def pid(self) -> int | None:
        """The server's process id, also its process group's (the python stubs are in it)."""
        return None if self._process is None else self._process.pid

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}/metrics"

    def command(self, backends: Path, cache: Path) -> list[str]:
        return [
            str(_pytriton_server_dir() / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            f"--cache-directory={cache}",
            f"--http-address={LOOPBACK}", f"--http-port={self.http_port}",
            f"--grpc-address={LOOPBACK}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={LOOPBACK}", f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false", "--allow-cpu-metrics=true",
            "--strict-readiness=true", "--exit-on-error=true",
            *METRICS_ARGS,
            *self.extra_args,
        ]

    def start(self, timeout: float = 60.0) -> TritonServer:
        unset = [n for n in ("http_port", "grpc_port", "metrics_port") if not getattr(self, n)]
        for name, port in zip(unset, free_ports(len(unset)), strict=True):
            setattr(self, name, port)
        self._workdir = tempfile.TemporaryDirectory(prefix="mlserve-triton-")
        work = Path(self._workdir.name)
        backends = prepare_backends(work)
        (work / "cache").mkdir()
        log = (self.log_path or work / "tritonserver.log").open("wb")
        self._process = subprocess.Popen(
            self.command(backends, work / "cache"), stdout=log, stderr=subprocess.STDOUT,
            env=server_environment(self.env), start_new_session=True)
        TritonServer.running.add(self._process.pid)
        self._log: BinaryIO | None = log
        self._log_file = self.log_path or work / "tritonserver.log"
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self._process.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}{READY_PATH}", timeout=2) as answer:
                    ready = answer.status == 200
                # Ready means every endpoint: the metrics server starts on its own port.
                with urllib.request.urlopen(self.metrics_url, timeout=2) as answer:
                    if ready and answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"tritonserver not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(Path(self._log_file).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Triton drains and unloads on SIGINT
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if process is not None:
            # The python stubs share the server's process group and notice its exit a moment
            # later; until then they are still running the model. Stopped means all of it gone.
            end_process_group(process.pid)
            TritonServer.running.discard(process.pid)
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()
            self._log = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
