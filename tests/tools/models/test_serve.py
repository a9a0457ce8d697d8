"""tools/models/serve.py: the repository served by a real tritonserver on loopback."""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from modelrepo import repository
from tests.harness import ROOT_DIR
from tools.models.serve import TritonServer, group_members, write_twins

SHIPPED = ROOT_DIR / "model_repo"
MODEL = "cifar10"
SERIES = ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
          "nv_inference_exec_count", "nv_inference_pending_request_count",
          "nv_inference_queue_duration_us", "nv_inference_request_duration_us")


@pytest.fixture
def server(local_triton):
    return local_triton


@pytest.fixture(scope="module")
def reference():
    model = torch.jit.load(str(SHIPPED / MODEL / "1" / "model.pt"), map_location="cpu")

    def predict(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(images)).numpy()
    return predict


def images(count: int, seed: int = 0, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 3, size, size), dtype=np.uint8)


def metrics(server: TritonServer) -> dict[str, float]:
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r'^(nv_inference_\w+)\{([^}]*)\} (\S+)$', line)
        if match and 'model="cifar10"' in match[2]:
            # Series with extra labels (failure reasons) are summed per name.
            values[match[1]] = values.get(match[1], 0.0) + float(match[3])
    return values


def test_live_ready_and_metadata(server):
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL}/ready"):
        assert urllib.request.urlopen(server.url + path, timeout=10).status == 200
    meta = json.load(urllib.request.urlopen(f"{server.url}/v2/models/{MODEL}", timeout=10))
    assert meta["inputs"] == [{"name": "image__0", "datatype": "UINT8", "shape": [-1, 3, -1, -1]}]
    assert meta["outputs"] == [{"name": "probs__0", "datatype": "FP32", "shape": [-1, 10]}]
    config = json.load(urllib.request.urlopen(f"{server.url}/v2/models/{MODEL}/config",
                                              timeout=10))
    assert config["max_batch_size"] == 64 and "dynamic_batching" in config


def test_the_tutorial_clients_plain_json_request(server, reference):
    image = images(1, seed=7)
    body = {"inputs": [{"name": "image__0", "shape": [1, 3, 32, 32], "datatype": "UINT8",
                        "data": image.flatten().tolist()}]}
    request = urllib.request.Request(f"{server.url}/v2/models/{MODEL}/infer",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    answer = json.load(urllib.request.urlopen(request, timeout=30))
    (output,) = answer["outputs"]
    assert output["name"] == "probs__0" and output["datatype"] == "FP32"
    assert output["shape"] == [1, 10]
    probs = np.array(output["data"], dtype=np.float32)
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(probs, reference(image)[0], rtol=1e-5, atol=1e-6)


def test_binary_http_batch_of_any_image_size(server, reference):
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    batch = images(4, seed=3, size=48)
    tensor = httpclient.InferInput("image__0", list(batch.shape), "UINT8")
    tensor.set_data_from_numpy(batch, binary_data=True)
    result = client.infer(MODEL, [tensor], outputs=[httpclient.InferRequestedOutput(
        "probs__0", binary_data=True)])
    probs = result.as_numpy("probs__0")
    assert probs.shape == (4, 10)
    np.testing.assert_allclose(probs.sum(axis=1), np.ones(4), rtol=1e-5)
    np.testing.assert_allclose(probs, reference(batch), rtol=1e-5, atol=1e-6)
    client.close()


def test_grpc(server, reference):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    batch = images(2, seed=5)
    tensor = grpcclient.InferInput("image__0", list(batch.shape), "UINT8")
    tensor.set_data_from_numpy(batch)
    probs = client.infer(MODEL, [tensor]).as_numpy("probs__0")
    np.testing.assert_allclose(probs, reference(batch), rtol=1e-5, atol=1e-6)


def test_dynamic_batching_merges_concurrent_requests(server):
    before = metrics(server)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
        tensor = httpclient.InferInput("image__0", [1, 3, 32, 32], "UINT8")
        tensor.set_data_from_numpy(images(1, seed), binary_data=True)
        try:
            for _ in range(20):
                client.infer(MODEL, [tensor])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    after = metrics(server)
    inferences = after["nv_inference_count"] - before["nv_inference_count"]
    executions = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
    assert inferences == 16 * 20
    assert executions < inferences, (executions, inferences)


def test_metrics_the_autoscaler_and_dashboards_use(server):
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    tensor = httpclient.InferInput("image__0", [1, 3, 32, 32], "UINT8")
    tensor.set_data_from_numpy(images(1), binary_data=True)
    client.infer(MODEL, [tensor])
    client.close()
    values = metrics(server)
    for series in SERIES:
        assert series in values, series
    assert values["nv_inference_request_success"] >= 1
    assert values["nv_inference_pending_request_count"] >= 0


def test_server_stops_and_frees_its_ports(tmp_path):
    twins = write_twins(repository.load(SHIPPED), tmp_path / "repo")
    server = TritonServer(str(twins)).start()
    try:
        process = server._process
    finally:
        server.stop()
    assert process is not None and process.poll() is not None
    assert group_members(process.pid) == []  # the python stubs too
    with socket.socket() as sock:
        # Nobody listens any more (SO_REUSEADDR tolerates the closed connections' TIME_WAIT).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", server.http_port))
        sock.listen()


def test_a_pinned_instance_and_its_python_stub_run_on_its_core(tmp_path, reference):
    """What SHIPPED_TWIN's pinning relies on (serve.HOST_POLICY_PREFIX): Triton applies the
    instance group's host policy to the instance's threads, and the python stub it starts
    inherits the core. The last usable core is asked for, so a default mask can't pass."""
    import os

    from tools.models.serve import TwinSettings, processes, usable_cores

    cores = usable_cores()
    settings = TwinSettings(pin_instances=True)
    twins = write_twins(repository.load(SHIPPED), tmp_path / "repo", settings)
    config = (twins / MODEL / "config.pbtxt").read_text()
    assert 'host_policy: "core0"' in config  # the repository's first model starts at core 0
    (twins / MODEL / "config.pbtxt").write_text(
        config.replace('host_policy: "core0"', f'host_policy: "core{cores[-1]}"'))

    def mask(path: str) -> set[int]:
        line = next(line for line in Path(path).read_text().splitlines()
                    if line.startswith("Cpus_allowed_list"))
        found: set[int] = set()
        for part in line.split()[1].split(","):
            low, _, high = part.partition("-")
            found.update(range(int(low), int(high or low) + 1))
        return found

    with TritonServer(str(twins), extra_args=settings.server_args()) as server:
        client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
        tensor = httpclient.InferInput("image__0", [2, 3, 32, 32], "UINT8")
        tensor.set_data_from_numpy(images(2), binary_data=True)
        probs = client.infer(MODEL, [tensor]).as_numpy("probs__0")
        client.close()
        (stub,) = [p.pid for p in processes() if p.pgid == server.pid and p.pid != server.pid]
        stub_threads = [mask(f"/proc/{stub}/task/{t}/status")
                        for t in os.listdir(f"/proc/{stub}/task")]
        server_threads = [mask(f"/proc/{server.pid}/task/{t}/status")
                          for t in os.listdir(f"/proc/{server.pid}/task")]
    np.testing.assert_allclose(probs, reference(images(2)), rtol=1e-4, atol=1e-6)
    assert stub_threads and all(m == {cores[-1]} for m in stub_threads)  # torch's too
    assert {cores[-1]} in server_threads  # the instance's backend thread
    # The HTTP side is not pinned: it keeps the other cores.
    assert set(cores) in server_threads


def test_twins_leave_the_repository_untouched(tmp_path):
    before = repository.load(SHIPPED).content_hash
    write_twins(repository.load(SHIPPED), tmp_path / "repo")
    assert repository.load(SHIPPED).content_hash == before
    assert not list(SHIPPED.rglob("model.py")) and not list(SHIPPED.rglob("__pycache__"))
    config = (tmp_path / "repo" / MODEL / "config.pbtxt").read_text()
    assert 'backend: "python"' in config and "KIND_CPU" in config and "platform" not in config
    assert "dynamic_batching {" in config


def test_a_broken_model_fails_to_start_with_the_log(tmp_path):
    twins = write_twins(repository.load(SHIPPED), tmp_path / "repo")
    (twins / MODEL / "1" / "model.pt").write_bytes(b"broken")
    with pytest.raises(RuntimeError, match="tritonserver exited"):
        TritonServer(str(twins)).start(timeout=60)


def test_cli_validate(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "tools.models", "validate"], cwd=ROOT_DIR,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "model_repo: valid (1 model(s): cifar10" in result.stdout
    broken = tmp_path / "repo"
    (broken / "m" / "1").mkdir(parents=True)
    result = subprocess.run([sys.executable, "-m", "tools.models", "--repository", str(broken),
                             "validate"], cwd=ROOT_DIR, capture_output=True, text=True)
    assert result.returncode == 1
    assert "repo/m/config.pbtxt: missing" in result.stderr
    assert Path(ROOT_DIR / "model_repo").is_dir()


def test_make_serve_cli_prints_the_endpoint_and_stops_on_ctrl_c():
    import os
    import signal

    from tests.tools.models.serve_cli import serve_cli
    from tools.models.serve import group_members

    with serve_cli() as cli:
        http, process = cli.http_port, cli.process
        assert f"V2 HTTP:  http://127.0.0.1:{http}" in cli.banner, cli.banner
        ready = urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=10)
        assert ready.status == 200
        (server_group,) = cli.server_groups
        os.killpg(process.pid, signal.SIGINT)
        rest = cli.rest(timeout=60)
        assert process.returncode == 0 and "stopped" in rest, rest
        # Stopped means the server and its python stubs are gone, not only the CLI.
        assert group_members(server_group) == []
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", http))
            sock.listen()


def test_model_config_name_selects_the_cpu_config(tmp_path):
    """What the local stack relies on: tritonserver --model-config-name=cpu picks
    <model>/configs/cpu.pbtxt over config.pbtxt."""
    twins = write_twins(repository.load(SHIPPED), tmp_path / "repo")
    cpu = twins / MODEL / "configs" / "cpu.pbtxt"
    assert cpu.is_file()
    cpu.write_text(cpu.read_text().replace(
        "dynamic_batching {", "dynamic_batching {\n  max_queue_delay_microseconds: 777"))
    with TritonServer(str(twins), extra_args=("--model-config-name=cpu",)) as server:
        config = json.load(urllib.request.urlopen(f"{server.url}/v2/models/{MODEL}/config",
                                                  timeout=10))
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 777
