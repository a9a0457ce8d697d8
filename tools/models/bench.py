"""The shipped config against the original tutorial's, served by a real Triton, measured so that
the number says something about the server and reproduces on a busy 2-core machine.

- Load: wrk, a native client in its own process (tools/models/loadgen.py), closed loop, with
  Triton's binary-tensor body and, separately, the tutorial client's JSON body. Its CPU share,
  the server's and everyone else's are recorded for every point.
- Interleaved A/B: baseline, shipped, baseline, shipped, ... (`pairs` pairs), each run on a
  freshly started server with its own warm-up. Results are medians with the min-max over runs;
  ratios are medians of the per-pair ratios (the two halves of a pair ran back to back, under
  the same neighbours), never a best run.
- The compute limit: the same TorchScript called in one process at the shipped max_batch_size
  with the threads the served twin uses (a caller per instance, its torch threads) and the same
  allocator, as images/s, measured before each pair. limit_ratio = shipped throughput at 32
  clients / that limit: how much of the machine the serving path leaves on the table.
- A no-op model behind the same config: what the serving path and the client carry without the
  model, so a reader can see the client is not the limit.

The last line is machine-readable:

    bench: throughput_ratio=<median> p95_ratio=<median> limit_ratio=<median> runs=<pairs>
    spread=<max/min of the shipped throughput at 32 clients>
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from modelrepo import repository
from tools.models import loadgen
from tools.models.loadgen import Body, LoadResult
from tools.models.serve import NOOP_MODEL, SHIPPED_TWIN, TritonServer, TwinSettings, write_twin

MODEL = "cifar10"
CONCURRENCIES = (1, 8, 32, 64)
REFERENCE_CONCURRENCY = 32
FORMATS = ("binary", "json")
BASELINE, SHIPPED, NOOP = "baseline", "shipped", "no-op model"
BASELINE_TWIN = TwinSettings()
"""The tutorial's config is served as its deployment served it: Triton's defaults (one instance
for a pytorch model on CPU, glibc malloc, 8 HTTP threads). The shipped one runs SHIPPED_TWIN."""
REPORT_FILE = "docs/models.md"
"""Where `make bench README=1` writes the report, between README_START and README_END."""
TARGETS = {"throughput_ratio": (">=", 3.0), "p95_ratio": ("<=", 1.0), "limit_ratio": (">=", 0.5)}
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"
QUIET_CORES = 0.1
"""Other processes' median CPU below this: the report calls the machine otherwise quiet."""


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Point:
    config: str
    run: int
    format: str
    concurrency: int
    load: LoadResult

    @property
    def throughput(self) -> float:
        return self.load.throughput


@dataclass(frozen=True)
class Limit:
    run: int
    images_per_second: float
    batch: int
    callers: int
    threads: int
    cores: tuple[int, ...] | None
    """The cores the limit ran on: the shipped instances' when they are pinned, else any."""


@dataclass
class Session:
    pairs: int
    seconds: int
    warmup: int
    concurrencies: tuple[int, ...]
    formats: tuple[str, ...]
    twin: TwinSettings
    shipped_max_batch: int
    points: list[Point] = field(default_factory=list)
    limits: list[Limit] = field(default_factory=list)
    machine: dict[str, str] = field(default_factory=dict)

    def select(self, config: str, fmt: str, concurrency: int) -> list[Point]:
        return sorted((p for p in self.points if (p.config, p.format, p.concurrency) ==
                       (config, fmt, concurrency)), key=lambda p: p.run)


# ---- measuring ----

def reference_image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1, 3, 32, 32), dtype=np.uint8)


def bodies(image: np.ndarray, formats: Iterable[str]) -> dict[str, Body]:
    makers = {"binary": loadgen.binary_body, "json": loadgen.tutorial_json_body}
    unknown = sorted(set(formats) - set(makers))
    if unknown:
        raise BenchError(f"unknown request format(s) {unknown}: choose from {sorted(makers)}")
    return {fmt: makers[fmt](image) for fmt in formats}


def check_answer(url: str, body: Body, expected: np.ndarray | None) -> None:
    """One request with the exact body the load sends: HTTP 200 and, for the real model, the
    TorchScript's own probabilities. The load itself only counts status codes."""
    request = urllib.request.Request(f"{url}/v2/models/{MODEL}/infer", data=body.content,
                                     headers=body.headers(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        status, raw = answer.status, answer.read()
        header_length = answer.headers.get("Inference-Header-Content-Length")
    if status != 200:
        raise BenchError(f"{body.format} request: HTTP {status}")
    if expected is None:
        return
    if header_length is not None:
        probs = np.frombuffer(raw[int(header_length):], dtype=np.float32)
    else:
        import json

        probs = np.array(json.loads(raw)["outputs"][0]["data"], dtype=np.float32)
    if probs.shape != (expected.size,) or not np.allclose(probs, expected.ravel(),
                                                          rtol=1e-4, atol=1e-6):
        raise BenchError(f"{body.format} request: the server answered {probs}, the TorchScript "
                         f"computes {expected.ravel()}")


def compute_limit(model_file: Path, batch: int, seconds: float, *, callers: int = 1,
                  threads: int = 1, env: dict[str, str] | None = None,
                  cores: Sequence[int] | None = None) -> float:
    """compute_limit_here in a fresh process with `env` added to its environment (the served
    twin's allocator, LD_PRELOAD, only takes effect in a process started with it), on `cores`
    only when given (those the served instances are pinned to)."""
    command = [sys.executable, "-m", "tools.models.bench", str(model_file), str(batch),
               str(seconds), str(callers), str(threads),
               ",".join(map(str, cores)) if cores else ""]
    done = subprocess.run(command, cwd=Path(__file__).resolve().parents[2], capture_output=True,
                          text=True, env={**os.environ, **(env or {})},
                          timeout=seconds + 120)
    if done.returncode != 0:
        raise BenchError(f"compute limit: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.split()[-1])


def compute_limit_here(model_file: Path, batch: int, seconds: float, *, callers: int = 1,
                       threads: int = 1) -> float:
    """Images/s of the TorchScript called in this process on `batch` images: `callers` threads
    calling it at once (a TorchScript call releases the GIL), each forward with `threads`
    intra-op threads. The ceiling for any serving path that runs the model like that."""
    import threading

    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = torch.jit.load(str(model_file), map_location="cpu").eval()
        images = torch.from_numpy(np.random.default_rng(1).integers(
            0, 256, (batch, 3, 32, 32), dtype=np.uint8))
        with torch.inference_mode():
            for _ in range(10):
                model(images)
        calls = [0] * callers
        start = threading.Barrier(callers + 1)
        stop = threading.Event()

        def call(index: int) -> None:
            with torch.inference_mode():
                start.wait()
                while not stop.is_set():
                    model(images)
                    calls[index] += 1

        workers = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(callers)]
        for worker in workers:
            worker.start()
        start.wait()
        began = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for worker in workers:
            worker.join()
        return sum(calls) * batch / (time.perf_counter() - began)
    finally:
        torch.set_num_threads(previous)


def reference_output(model_file: Path, image: np.ndarray) -> np.ndarray:
    import torch

    model = torch.jit.load(str(model_file), map_location="cpu").eval()
    with torch.inference_mode():
        return model(torch.from_numpy(image)).numpy()


def measure_config(name: str, run: int, config: mc.ModelConfig, model_dir: Path,
                   twin: TwinSettings, body_files: dict[str, tuple[Path, Body]],
                   concurrencies: Sequence[int], seconds: int, warmup: int,
                   expected: np.ndarray | None) -> list[Point]:
    """One run of one config: a fresh server, a check per body, a warm-up, then every point."""
    points = []
    with tempfile.TemporaryDirectory(prefix="mlserve-bench-") as work:
        write_twin(MODEL, config, model_dir, Path(work) / "repo", twin)
        with TritonServer(str(Path(work) / "repo"), env=twin.server_env(),
                          extra_args=twin.server_args()) as server:
            url = f"{server.url}/v2/models/{MODEL}/infer"
            pgid = server.pid
            for path, body in body_files.values():
                check_answer(server.url, body, expected)
                if warmup:
                    loadgen.run_wrk(url, path, body, REFERENCE_CONCURRENCY, warmup)
            for fmt, (path, body) in body_files.items():
                for concurrency in concurrencies:
                    result = loadgen.run_wrk(url, path, body, concurrency, seconds,
                                             server_pgid=pgid)
                    points.append(Point(name, run, fmt, concurrency, result))
    return points


def parse_config(path: Path) -> mc.ModelConfig:
    config = mc.ModelConfig()
    try:
        text_format.Parse(path.read_text(), config)
    except (OSError, text_format.ParseError) as exc:
        raise BenchError(f"{path}: {exc}") from exc
    return config


def machine_description() -> dict[str, str]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or model
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cores": str(loadgen.cpu_count()), "cpu": model,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "system": f"{platform.system()} {platform.release()}",
            "load_before": " ".join(f"{v:.2f}" for v in load)}


def run(repo_root: Path, baseline_config: Path, shipped_config: Path | None = None, *,
        pairs: int = 5, concurrencies: Sequence[int] = CONCURRENCIES,
        formats: Sequence[str] = FORMATS, seconds: int = 5, warmup: int = 2,
        twin: TwinSettings = SHIPPED_TWIN, limit_seconds: float = 3.0, noop: bool = True,
        progress: Callable[[str], None] = lambda line: None) -> Session:
    """Interleaved runs: baseline, shipped, baseline, shipped, ... then the no-op model once."""
    if pairs < 1 or seconds < 1 or warmup < 0:
        raise BenchError(f"pairs and seconds must be >= 1 and warmup >= 0, got pairs={pairs} "
                         f"seconds={seconds} warmup={warmup}")
    if REFERENCE_CONCURRENCY not in concurrencies:
        raise BenchError(f"concurrencies must include {REFERENCE_CONCURRENCY}: the ratios are "
                         f"taken there")
    model = repository.load(repo_root).models[MODEL]
    model_file = model.path / "1" / model.model_file
    configs = {BASELINE: parse_config(baseline_config),
               SHIPPED: parse_config(shipped_config) if shipped_config else model.config}
    twins = {BASELINE: BASELINE_TWIN, SHIPPED: twin}
    batch = configs[SHIPPED].max_batch_size
    session = Session(pairs=pairs, seconds=seconds, warmup=warmup,
                      concurrencies=tuple(concurrencies), formats=tuple(formats), twin=twin,
                      shipped_max_batch=batch, machine=machine_description())
    image = reference_image()
    expected = reference_output(model_file, image)
    with tempfile.TemporaryDirectory(prefix="mlserve-bench-bodies-") as work:
        body_files = {}
        for fmt, body in bodies(image, formats).items():
            path = Path(work) / f"{fmt}.body"
            path.write_bytes(body.content)
            body_files[fmt] = (path, body)
        callers = twin.instances  # each instance runs its own forward passes
        cores = tuple(twin.instance_cores()) if twin.pin_instances else None
        for run_index in range(1, pairs + 1):
            limit = compute_limit(model_file, batch, limit_seconds, callers=callers,
                                  threads=twin.torch_threads, env=twin.server_env(),
                                  cores=cores)
            session.limits.append(Limit(run_index, limit, batch, callers, twin.torch_threads,
                                        cores))
            progress(f"run {run_index}/{pairs}: compute limit {limit:.0f} images/s")
            for name in (BASELINE, SHIPPED):
                points = measure_config(name, run_index, configs[name], model.path, twins[name],
                                        body_files, concurrencies, seconds, warmup, expected)
                session.points += points
                progress(f"run {run_index}/{pairs}: {name}: " + ", ".join(
                    f"{p.format}@{p.concurrency} {p.throughput:.0f}/s" for p in points))
        if noop:
            noop_twin = replace(twin, model_py=NOOP_MODEL)
            noop_points = measure_config(NOOP, 1, configs[SHIPPED], model.path, noop_twin,
                                         body_files, (REFERENCE_CONCURRENCY,), seconds, warmup,
                                         None)
            session.points += noop_points
            progress("no-op model: " + ", ".join(f"{p.format}@{p.concurrency} "
                                                 f"{p.throughput:.0f}/s" for p in noop_points))
    session.machine["load_after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return session


def failures(session: Session) -> list[str]:
    """Points where requests failed: such a session's numbers are void."""
    return [f"{p.config} run {p.run} {p.format}@{p.concurrency}: "
            f"{ {k: v for k, v in p.load.errors.items() if v} }"
            for p in session.points if p.load.error_count]


# ---- summarising ----

@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        values = sorted(values)
        if not values:
            raise BenchError("no measurement to summarise")
        return cls(statistics.median(values), values[0], values[-1])

    def render(self, digits: int = 0) -> str:
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}–{self.high:.{digits}f})"


def paired_ratios(session: Session, fmt: str, concurrency: int = REFERENCE_CONCURRENCY,
                  ) -> tuple[list[float], list[float]]:
    """Per run: shipped/baseline throughput and p95, from the two halves of the same pair."""
    baseline = {p.run: p for p in session.select(BASELINE, fmt, concurrency)}
    shipped = {p.run: p for p in session.select(SHIPPED, fmt, concurrency)}
    runs = sorted(baseline.keys() & shipped.keys())
    if not runs:
        raise BenchError(f"no complete pair at {fmt}@{concurrency}")
    return ([shipped[r].throughput / baseline[r].throughput for r in runs],
            [shipped[r].load.p95_ms / baseline[r].load.p95_ms for r in runs])


def limit_ratios(session: Session, fmt: str = "binary") -> list[float]:
    limits = {limit.run: limit.images_per_second for limit in session.limits}
    return [p.throughput / limits[p.run]
            for p in session.select(SHIPPED, fmt, REFERENCE_CONCURRENCY) if p.run in limits]


def headline_format(session: Session) -> str:
    return "binary" if "binary" in session.formats else session.formats[0]


def summary_values(session: Session) -> dict[str, float | int]:
    fmt = headline_format(session)
    throughput, p95 = paired_ratios(session, fmt)
    shipped = [p.throughput for p in session.select(SHIPPED, fmt, REFERENCE_CONCURRENCY)]
    return {"throughput_ratio": statistics.median(throughput), "p95_ratio": statistics.median(p95),
            "limit_ratio": statistics.median(limit_ratios(session, fmt)),
            "runs": len(throughput), "spread": max(shipped) / min(shipped)}


def summary(session: Session) -> str:
    values = summary_values(session)
    return (f"bench: throughput_ratio={values['throughput_ratio']:.2f} "
            f"p95_ratio={values['p95_ratio']:.2f} limit_ratio={values['limit_ratio']:.2f} "
            f"runs={values['runs']} spread={values['spread']:.2f}")


def targets(session: Session) -> str:
    values = summary_values(session)
    verdicts = []
    for key, (op, bound) in TARGETS.items():
        met = values[key] >= bound if op == ">=" else values[key] <= bound
        verdicts.append(f"{key} {op} {bound:g}: {'met' if met else 'NOT met'} "
                        f"({values[key]:.2f})")
    return "targets: " + "; ".join(verdicts)


def _cores(values: Iterable[float | None]) -> str:
    present = [v for v in values if v is not None]
    return f"{statistics.median(present):.2f}" if present else "n/a"


_HEADER = ("throughput, req/s", "p95, ms", "p50, ms", "errors", "client CPU", "server CPU",
           "others' CPU")


def _row(points: Sequence[Point]) -> list[str]:
    loads = [p.load for p in points]
    return [Spread.of(p.throughput for p in points).render(),
            Spread.of(x.p95_ms for x in loads).render(1),
            f"{statistics.median(x.p50_ms for x in loads):.1f}",
            str(sum(x.error_count for x in loads)),
            _cores(x.client_cores for x in loads), _cores(x.server_cores for x in loads),
            _cores(x.other_cores for x in loads)]


def _markdown(header: Sequence[str], numeric_from: int, rows: Iterable[Sequence[str]]) -> str:
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, align, *rows])


def table(session: Session, fmt: str, configs: Sequence[str] = (BASELINE, SHIPPED)) -> str:
    """One body format: a row per config and concurrency, medians (min–max) over the runs."""
    rows = [[config, str(concurrency), *_row(session.select(config, fmt, concurrency))]
            for config in configs
            for concurrency in sorted({p.concurrency for p in session.points
                                       if (p.config, p.format) == (config, fmt)})]
    return _markdown(("config", "clients", *_HEADER), 1, rows)


def noop_table(session: Session) -> str:
    rows = [[fmt, str(concurrency), *_row(session.select(NOOP, fmt, concurrency))]
            for fmt in session.formats
            for concurrency in sorted({p.concurrency for p in session.points
                                       if (p.config, p.format) == (NOOP, fmt)})]
    return _markdown(("body", "clients", *_HEADER), 1, rows)


def ratio_table(session: Session) -> str:
    rows = ["| body | concurrency | throughput ratio | p95 ratio |", "| --- | ---: | ---: | ---: |"]
    for fmt in session.formats:
        for concurrency in session.concurrencies:
            throughput, p95 = paired_ratios(session, fmt, concurrency)
            rows.append(f"| {fmt} | {concurrency} | {Spread.of(throughput).render(2)} "
                        f"| {Spread.of(p95).render(2)} |")
    return "\n".join(rows)


def limit_table(session: Session) -> str:
    fmt = headline_format(session)
    limits = Spread.of(limit.images_per_second for limit in session.limits)
    shipped = Spread.of(p.throughput for p in session.select(SHIPPED, fmt, REFERENCE_CONCURRENCY))
    return "\n".join([
        "| compute limit, images/s | shipped at 32 clients, req/s | limit_ratio |",
        "| ---: | ---: | ---: |",
        f"| {limits.render()} | {shipped.render()} | "
        f"{Spread.of(limit_ratios(session, fmt)).render(2)} |"])


def report(session: Session) -> str:
    """The Markdown docs/models.md's "Performance" section shows, regenerated by every run."""
    machine = session.machine
    others = [p.load.other_cores for p in session.points if p.load.other_cores is not None]
    if others:
        busy = statistics.median(others) >= QUIET_CORES
        load_line = (f"CPU used by other processes during the measured points: median "
                     f"{statistics.median(others):.2f}, max {max(others):.2f} cores ("
                     + ("other work was running" if busy else "otherwise quiet") + ")")
    else:
        load_line = "CPU used by other processes: not measured (no /proc)"
    twin = session.twin
    parts = [
        f"Machine: {machine['cores']} cores ({machine['cpu']}), {machine['system']}; load "
        f"average {machine['load_before']} before, {machine.get('load_after', '?')} after; "
        f"{load_line}.",
        "",
        f"Command: `python -m tools.models bench --pairs {session.pairs} --seconds "
        f"{session.seconds} --warmup {session.warmup}` (what `make bench` runs), "
        f"{machine.get('date', '')}.",
        "",
        f"{session.pairs} interleaved pairs (baseline, shipped, ...), each run on a fresh server "
        f"with {session.warmup} s of warm-up per body, {session.seconds} s per point; wrk "
        f"({loadgen.CLIENT_THREADS} thread, closed loop); shipped local twin: {twin.describe()}; "
        f"baseline (Triton's defaults): {BASELINE_TWIN.describe()}. Cells: median (min–max) "
        f"over the runs; CPU columns in cores (median).",
    ]
    for fmt in session.formats:
        title = {"binary": "Binary tensors (Triton's binary-tensor extension, binary output)",
                 "json": "The tutorial client's JSON body (nested list, JSON output)"}[fmt]
        parts += ["", f"{title}:", "", table(session, fmt)]
    parts += ["", "Ratios shipped/baseline, per pair (median (min–max)):", "",
              ratio_table(session), "",
              f"Compute limit: the TorchScript in-process on {session.shipped_max_batch} images "
              f"per call, {twin.instances} caller(s) x {twin.torch_threads} thread(s)"
              f"{twin.describe_pinning()}, {twin.allocator or 'glibc'} malloc (as the shipped "
              f"twin runs it), measured "
              f"before each pair:", "",
              limit_table(session)]
    if any(p.config == NOOP for p in session.points):
        parts += ["", "The same serving path with a no-op model (zeros, no torch): what client "
                  "and server carry without the model, one run:", "", noop_table(session)]
    parts += ["", "```", targets(session), summary(session), "```"]
    return "\n".join(parts)


def update_readme(readme: Path, section: str) -> None:
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise BenchError(f"{readme}: no {README_START} ... {README_END} block to replace")
    readme.write_text(text[:start + len(README_START)] + "\n" + section + "\n" + text[end:])


if __name__ == "__main__":
    # compute_limit's child: MODEL_FILE BATCH SECONDS CALLERS THREADS CORES -> images/s
    _model, _batch, _seconds, _callers, _threads, _pinned = sys.argv[1:7]
    if _pinned:  # before torch starts its threads, which inherit the mask
        os.sched_setaffinity(0, {int(core) for core in _pinned.split(",")})
    print(compute_limit_here(Path(_model), int(_batch), float(_seconds), callers=int(_callers),
                             threads=int(_threads)))
