"""Throughput and latency of the shipped config against the original tutorial's, on a real Triton.

Both configs serve the same TorchScript on the same machine in the same run, each in its own
server, under closed-loop load: N client threads, each sending its next request as soon as the
last one is answered. The last line is machine-readable:

    bench: throughput_ratio=<shipped/baseline at 32> p95_ratio=<shipped/baseline at 32>
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from modelrepo import repository
from tools.models.serve import TritonServer, write_twin

MODEL = "cifar10"
CONCURRENCIES = (1, 8, 32, 64)
REFERENCE_CONCURRENCY = 32


@dataclass
class Point:
    config: str
    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    errors: int

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


def _client_loop(url: str, stop: threading.Event, measuring: threading.Event,
                 latencies: list[float], errors: list[int], seed: int) -> None:
    client = httpclient.InferenceServerClient(url.removeprefix("http://"), connection_timeout=30,
                                              network_timeout=30)
    image = np.random.default_rng(seed).integers(0, 256, (1, 3, 32, 32), dtype=np.uint8)
    tensor = httpclient.InferInput("image__0", list(image.shape), "UINT8")
    tensor.set_data_from_numpy(image, binary_data=True)
    output = httpclient.InferRequestedOutput("probs__0", binary_data=True)
    try:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                client.infer(MODEL, [tensor], outputs=[output])
            except Exception:  # noqa: BLE001 - counted, reported in the table
                if measuring.is_set():
                    errors.append(1)
                continue
            if measuring.is_set():
                latencies.append(time.perf_counter() - start)
    finally:
        client.close()


def measure(url: str, config: str, concurrency: int, seconds: float, warmup: float) -> Point:
    stop, measuring = threading.Event(), threading.Event()
    latencies: list[float] = []
    errors: list[int] = []
    threads = [threading.Thread(target=_client_loop, daemon=True,
                                args=(url, stop, measuring, latencies, errors, i))
               for i in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(warmup)
    measuring.set()
    began = time.perf_counter()
    time.sleep(seconds)
    measuring.clear()
    elapsed = time.perf_counter() - began
    stop.set()
    for thread in threads:
        thread.join(60)
    ordered = sorted(latencies) or [float("nan")]
    return Point(config=config, concurrency=concurrency, requests=len(latencies),
                 seconds=elapsed, p50_ms=statistics.median(ordered) * 1000,
                 p95_ms=ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000,
                 errors=len(errors))


def _twin_repository(config_path: Path, model_dir: Path, out: Path,
                     queue_delay_us: int | None = None) -> Path:
    config = mc.ModelConfig()
    text_format.Parse(config_path.read_text(), config)
    if queue_delay_us is not None:
        config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    write_twin(MODEL, config, model_dir, out)
    return out


def run_config(name: str, config_path: Path, model_dir: Path, concurrencies: Sequence[int],
               seconds: float, warmup: float, queue_delay_us: int | None = None) -> list[Point]:
    with tempfile.TemporaryDirectory(prefix="mlserve-bench-") as work:
        twins = _twin_repository(config_path, model_dir, Path(work) / "repo", queue_delay_us)
        with TritonServer(str(twins)) as server:
            return [measure(server.url, name, c, seconds, warmup) for c in concurrencies]


def table(points: Sequence[Point]) -> str:
    rows = ["| config | concurrency | throughput (req/s) | p50 (ms) | p95 (ms) | errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    rows += [f"| {p.config} | {p.concurrency} | {p.throughput:.1f} | {p.p50_ms:.1f} | "
             f"{p.p95_ms:.1f} | {p.errors} |" for p in points]
    return "\n".join(rows)


def summary(points: Sequence[Point], reference: int = REFERENCE_CONCURRENCY) -> str:
    at = {(p.config, p.concurrency): p for p in points}
    shipped, baseline = at[("shipped", reference)], at[("baseline", reference)]
    return (f"bench: throughput_ratio={shipped.throughput / baseline.throughput:.2f} "
            f"p95_ratio={shipped.p95_ms / baseline.p95_ms:.2f}")


def run(repo_root: Path, baseline_config: Path, *, concurrencies: Sequence[int] = CONCURRENCIES,
        seconds: float = 10.0, warmup: float = 2.0) -> list[Point]:
    repo = repository.load(repo_root)
    model = repo.models[MODEL]
    points = run_config("baseline", baseline_config, model.path, concurrencies, seconds, warmup)
    points += run_config("shipped", model.path / repository.CONFIG_FILE, model.path,
                         concurrencies, seconds, warmup)
    return points


def sweep_queue_delay(repo_root: Path, delays_us: Sequence[int], *, concurrency: int,
                      seconds: float, warmup: float) -> list[Point]:
    """The shipped config at one concurrency, for each max_queue_delay_microseconds."""
    model = repository.load(repo_root).models[MODEL]
    points = []
    for delay in delays_us:
        points += run_config(f"delay {delay}us", model.path / repository.CONFIG_FILE, model.path,
                             [concurrency], seconds, warmup, queue_delay_us=delay)
    return points
