"""A real Triton server on loopback, for model authors and tests (CPU, python backend).

The `nvidia-pytriton` wheel ships a `tritonserver` binary with the python backend only, so each
model is served through a python-backend twin: same name, tensors and batching, whose model.py
runs the model's TorchScript. Twins are generated into a temporary folder, never into
model_repo/. The binary's environment (backend directory, the python stub for this interpreter,
library path, PATH) is set up here, not in the user's shell.
"""

from __future__ import annotations

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from modelrepo.repository import CONFIG_FILE, CUSTOM_CONFIGS, Repository
from modelrepo.triton import METRICS_ARGS, READY_PATH

TWIN_MODEL = Path(__file__).parent / "twin_model.py"
LOOPBACK = "127.0.0.1"


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


def twin_config(config: mc.ModelConfig, *, instances: int) -> mc.ModelConfig:
    twin = mc.ModelConfig()
    twin.CopyFrom(config)
    twin.platform = ""
    twin.backend = "python"
    twin.default_model_filename = ""
    del twin.instance_group[:]
    twin.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=instances)
    return twin


def write_twin(name: str, config: mc.ModelConfig, model_dir: Path, out: Path, *,
               instances: int = 1) -> None:
    """Twin of one model: config for the python backend, model.py, and the TorchScript beside it."""
    target = out / name
    target.mkdir(parents=True, exist_ok=True)
    twin = twin_config(config, instances=instances)
    twin.name = name
    (target / CONFIG_FILE).write_text(text_format.MessageToString(twin))
    for entry in model_dir.iterdir():
        if entry.is_file() and entry.name != CONFIG_FILE:
            shutil.copy2(entry, target / entry.name)  # labels
    for custom in sorted((model_dir / CUSTOM_CONFIGS).glob("*.pbtxt")):
        # Alternative configs (tritonserver --model-config-name) get their twins too.
        alternative = mc.ModelConfig()
        text_format.Parse(custom.read_text(), alternative)
        twin_alternative = twin_config(alternative, instances=instances)
        twin_alternative.name = name
        (target / CUSTOM_CONFIGS).mkdir(exist_ok=True)
        (target / CUSTOM_CONFIGS / custom.name).write_text(
            text_format.MessageToString(twin_alternative))
    model_file = config.default_model_filename or "model.pt"
    for version in (v for v in model_dir.iterdir() if v.is_dir() and v.name.isdigit()):
        (target / version.name).mkdir(exist_ok=True)
        shutil.copy2(version / model_file, target / version.name / "model.pt")
        shutil.copy2(TWIN_MODEL, target / version.name / "model.py")


def write_twins(repository: Repository, out: Path, *, instances: int = 1) -> Path:
    for model in repository.models.values():
        write_twin(model.name, model.config, model.path, out, instances=instances)
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
        for name, port in zip(unset, free_ports(len(unset))):
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
        self._log = log
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
            TritonServer.running.discard(process.pid)
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
