"""tools/models/bench.py and loadgen.py: a short real benchmark, the statistics, the client."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess

import numpy as np
import pytest
import requests

from tests.harness import ROOT_DIR
from tools.models import bench, loadgen
from tools.models.bench import BASELINE, NOOP, SHIPPED, Limit, Point, Session
from tools.models.loadgen import LoadResult
from tools.models.serve import SHIPPED_TWIN, ServerSetupError, TwinSettings

BASELINE_CONFIG = ROOT_DIR / "bench/baseline/cifar10/config.pbtxt"
SUMMARY = re.compile(r"bench: throughput_ratio=\d+\.\d\d p95_ratio=\d+\.\d\d "
                     r"limit_ratio=\d+\.\d\d runs=\d+ spread=\d+\.\d\d")


@pytest.fixture(scope="module", autouse=True)
def wrk_and_jemalloc_installed():
    if loadgen.shutil.which("wrk") is None:
        pytest.fail("wrk is not installed: `make test` installs it (make wrk)")
    SHIPPED_TWIN.server_env()  # raises if jemalloc is missing: `make test` installs it


# ---- the real thing, short ----

def test_short_bench_against_real_servers():
    session = bench.run(ROOT_DIR / "model_repo", BASELINE_CONFIG, pairs=1, concurrencies=(32,),
                        formats=("binary", "json"), seconds=1, warmup=0, limit_seconds=0.5)
    assert [(p.run, p.config, p.format) for p in session.points] == [
        (1, BASELINE, "binary"), (1, BASELINE, "json"), (1, SHIPPED, "binary"),
        (1, SHIPPED, "json"), (1, NOOP, "binary"), (1, NOOP, "json")]
    assert bench.failures(session) == []
    for point in session.points:
        load = point.load
        assert load.requests > 0 and load.error_count == 0, point
        assert load.p50_ms <= load.p95_ms <= load.p99_ms <= load.max_ms
        # CPU is accounted for the client and the server separately, from the kernel.
        assert load.client_cores is not None and load.client_cores > 0
        assert load.server_cores is not None and load.server_cores > 0
        assert load.other_cores is not None and load.other_cores >= 0
    (limit,) = session.limits
    assert limit.images_per_second > 0 and (limit.batch, limit.callers, limit.threads) == (64, 1, 1)
    assert limit.cores == (min(os.sched_getaffinity(0)),)  # the shipped instance's core
    lines = bench.report(session).splitlines()
    assert SUMMARY.fullmatch(lines[-2]) and lines[-2] == bench.summary(session)
    assert lines[-3].startswith("targets: throughput_ratio >= 3: ")
    assert "runs=1 " in lines[-2]
    assert any(line.startswith("| shipped | 32 | ") for line in lines)
    assert any(line.startswith("| json | 32 | ") for line in lines)  # the no-op model's row


def test_runs_are_interleaved_pairs_each_on_a_fresh_server(monkeypatch):
    calls = []

    def measure(name, run, config, model_dir, twin, body_files, concurrencies, seconds, warmup,
                expected):
        calls.append((run, name, twin.model_py.name, twin.instances, twin.allocator,
                      expected is not None))
        return [Point(name, run, fmt, c, load(1000.0, 10.0)) for fmt in body_files
                for c in concurrencies]

    monkeypatch.setattr(bench, "measure_config", measure)
    monkeypatch.setattr(bench, "compute_limit",
                        lambda *args, callers, threads, env, cores: calls.append(
                            ("limit", callers, env.get("LD_PRELOAD", "").split(".")[0],
                             cores)) or 5e3)
    monkeypatch.setattr("tools.models.serve.usable_cores", lambda: [4, 6, 7])
    session = bench.run(ROOT_DIR / "model_repo", BASELINE_CONFIG, pairs=3, seconds=1,
                        twin=TwinSettings(instances=2, allocator="jemalloc", pin_instances=True))
    # The tutorial's config runs as Triton runs it (one instance, glibc); the shipped one as set,
    # and the compute limit with the shipped twin's callers, allocator and cores.
    pair = [[("limit", 2, "libjemalloc", (4, 6)),
             (run, BASELINE, "twin_model.py", 1, None, True),
             (run, SHIPPED, "twin_model.py", 2, "jemalloc", True)] for run in (1, 2, 3)]
    assert calls == [*pair[0], *pair[1], *pair[2],
                     (1, NOOP, "noop_model.py", 2, "jemalloc", False)]
    assert len(session.points) == 3 * 2 * 4 * 2 + 2


def test_baseline_is_the_tutorials_config():
    text = BASELINE_CONFIG.read_text()
    assert "max_batch_size: 0" in text and "dynamic_batching" not in text
    assert "dims: [-1, 3, -1, -1]" in text and "instance_group" not in text


def test_compute_limit_runs_the_torchscript_with_the_given_threads(monkeypatch):
    import torch

    before = torch.get_num_threads()
    model = ROOT_DIR / "model_repo/cifar10/1/model.pt"
    assert bench.compute_limit_here(model, 8, 0.2, callers=2, threads=1) > 0
    assert torch.get_num_threads() == before
    # In a child with the served twin's allocator preloaded, as the served twin runs.
    assert bench.compute_limit(model, 8, 0.2, env=SHIPPED_TWIN.server_env()) > 0
    # On the served instances' cores when they are pinned: the child pins itself (a core it
    # can't have makes sched_setaffinity fail, so the pinning is not skipped silently).
    assert bench.compute_limit(model, 8, 0.2, cores=[min(os.sched_getaffinity(0))]) > 0
    with pytest.raises(bench.BenchError, match="compute limit: .* failed"):
        bench.compute_limit(model, 8, 0.2, cores=[4096])
    monkeypatch.setattr(bench.sys, "executable", "false")
    with pytest.raises(bench.BenchError, match="compute limit: .* failed"):
        bench.compute_limit(model, 8, 0.2)


def test_bad_arguments_are_refused_before_anything_starts():
    with pytest.raises(bench.BenchError, match="concurrencies must include 32"):
        bench.run(ROOT_DIR / "model_repo", BASELINE_CONFIG, concurrencies=(1, 8))
    with pytest.raises(bench.BenchError, match="pairs and seconds"):
        bench.run(ROOT_DIR / "model_repo", BASELINE_CONFIG, pairs=0)
    with pytest.raises(bench.BenchError, match="unknown request format"):
        bench.bodies(bench.reference_image(), ["protobuf"])


# ---- the load generator ----

def test_json_body_is_byte_for_byte_what_the_tutorial_client_posts():
    image = bench.reference_image()
    payload = {"inputs": [{"name": "image__0", "datatype": "UINT8", "shape": [1, 3, 32, 32],
                           "data": image.tolist()}]}
    sent = requests.Request("POST", "http://127.0.0.1/", json=payload).prepare()
    body = loadgen.tutorial_json_body(image)
    assert body.content == sent.body
    assert body.headers() == {"Content-Type": sent.headers["Content-Type"]}
    assert isinstance(json.loads(body.content)["inputs"][0]["data"][0][0][0], list)


def test_binary_body_follows_the_binary_tensor_extension():
    image = bench.reference_image()
    body = loadgen.binary_body(image)
    header = json.loads(body.content[:body.inference_header_length])
    assert header["inputs"][0]["parameters"] == {"binary_data_size": 3 * 32 * 32}
    assert header["outputs"] == [{"name": "probs__0", "parameters": {"binary_data": True}}]
    assert body.content[body.inference_header_length:] == image.tobytes()
    assert body.headers()["Inference-Header-Content-Length"] == str(body.inference_header_length)


def test_the_answer_check_compares_with_the_torchscript(local_triton):
    image = bench.reference_image()
    expected = bench.reference_output(ROOT_DIR / "model_repo/cifar10/1/model.pt", image)
    for body in bench.bodies(image, bench.FORMATS).values():
        bench.check_answer(local_triton.url, body, expected)
        with pytest.raises(bench.BenchError, match="the TorchScript computes"):
            bench.check_answer(local_triton.url, body, np.zeros_like(expected))


def test_wrk_run_counts_requests_latency_and_cpu(local_triton, tmp_path):
    body = loadgen.binary_body(bench.reference_image())
    path = tmp_path / "body"
    path.write_bytes(body.content)
    result = loadgen.run_wrk(f"{local_triton.url}/v2/models/cifar10/infer", path, body, 4, 1,
                             server_pgid=local_triton.pid)
    assert result.requests > 0 and result.error_count == 0
    assert 0.9 < result.seconds < 1.5 and result.throughput == result.requests / result.seconds
    assert result.client_cores > 0 and result.server_cores > 0


def test_failed_requests_are_errors_not_throughput(local_triton, tmp_path):
    body = loadgen.binary_body(bench.reference_image())
    path = tmp_path / "body"
    path.write_bytes(body.content)
    result = loadgen.run_wrk(f"{local_triton.url}/v2/models/nonexistent/infer", path, body, 2, 1)
    assert result.errors["status_errors"] == result.requests > 0


def test_the_client_is_stopped_when_the_caller_fails(local_triton, tmp_path):
    body = loadgen.binary_body(bench.reference_image())
    path = tmp_path / "body"
    path.write_bytes(body.content)
    started = []

    def fail(process):
        started.append(process)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loadgen.run_wrk(f"{local_triton.url}/v2/models/cifar10/infer", path, body, 2, 30,
                        on_start=fail)
    (process,) = started
    assert process.returncode is not None  # killed and reaped
    with pytest.raises(ProcessLookupError):
        os.kill(process.pid, 0)


def test_missing_wrk_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(loadgen.shutil, "which", lambda name: None)
    with pytest.raises(loadgen.LoadGeneratorError, match="make bench"):
        loadgen.wrk_path()


def test_wrk_output_without_a_result_line_is_an_error():
    with pytest.raises(loadgen.LoadGeneratorError, match="no result line"):
        loadgen.parse_wrk_output("unable to connect to 127.0.0.1:9 Connection refused")


FAKE_APT_GET = """#!/bin/sh
echo "$*" >> "$APT_LOG"
case "$*" in
  *update*) touch "$APT_UPDATED";;
  *"install -y -qq wrk"*)
    [ -e "$APT_UPDATED" ] || exit 100
    printf '#!/bin/sh\\n' > "$BIN/wrk"; chmod +x "$BIN/wrk";;
esac
"""


def test_make_wrk_installs_it_with_apt_get_updating_the_lists_if_needed(tmp_path):
    """What CI's fresh machine goes through: no wrk, empty package lists."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text(FAKE_APT_GET)
    apt.chmod(apt.stat().st_mode | stat.S_IEXEC)
    for tool in ("id", "env", "sudo", "touch", "chmod"):
        found = loadgen.shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "APT_LOG": str(tmp_path / "apt.log"), "BIN": str(bin_dir),
           "APT_UPDATED": str(tmp_path / "updated"), "HOME": str(tmp_path)}
    make = loadgen.shutil.which("make")
    result = subprocess.run([make, "--no-print-directory", "wrk"], cwd=ROOT_DIR, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "apt.log").read_text().splitlines() == [
        "install -y -qq wrk", "update -qq", "install -y -qq wrk"]
    again = subprocess.run([make, "--no-print-directory", "wrk"], cwd=ROOT_DIR, env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and len((tmp_path / "apt.log").read_text().splitlines()) == 3


# ---- the statistics, on made-up sessions ----

def load(throughput: float, p95: float, *, client: float = 0.1) -> LoadResult:
    return LoadResult(connections=32, requests=int(throughput * 5), seconds=5.0, p50_ms=p95 / 2,
                      p95_ms=p95, p99_ms=p95 * 1.5, max_ms=p95 * 2,
                      errors={"status_errors": 0}, client_cores=client, server_cores=1.5,
                      other_cores=0.2)


def made_up_session(baseline: list[tuple[float, float]], shipped: list[tuple[float, float]],
                    limits: list[float]) -> Session:
    session = Session(pairs=len(baseline), seconds=5, warmup=2, concurrencies=(32,),
                      formats=("binary",), twin=TwinSettings(), shipped_max_batch=64,
                      machine={"cores": "2", "cpu": "test CPU", "system": "Linux",
                               "load_before": "0.00 0.00 0.00", "load_after": "0 0 0"})
    for run, ((bt, bp), (st, sp), limit) in enumerate(zip(baseline, shipped, limits, strict=True), start=1):
        session.points += [Point(BASELINE, run, "binary", 32, load(bt, bp)),
                           Point(SHIPPED, run, "binary", 32, load(st, sp))]
        session.limits.append(Limit(run, limit, 64, 1, 1, None))
    return session


def test_ratios_are_medians_of_per_pair_ratios_not_of_best_runs():
    # Run 2 was disturbed for both halves of its pair: its ratio still counts, once.
    session = made_up_session(baseline=[(1000, 20), (500, 40), (1000, 20)],
                              shipped=[(3000, 10), (1600, 18), (3300, 12)],
                              limits=[6000, 3000, 6000])
    values = bench.summary_values(session)
    assert values["throughput_ratio"] == pytest.approx(3.2)  # ratios 3.0, 3.2, 3.3
    assert values["p95_ratio"] == pytest.approx(0.5)  # ratios 0.5, 0.45, 0.6
    assert values["limit_ratio"] == pytest.approx(0.5333, abs=1e-4)  # 0.5, 0.533, 0.55
    assert values["runs"] == 3 and values["spread"] == pytest.approx(3300 / 1600)
    assert bench.summary(session) == (
        "bench: throughput_ratio=3.20 p95_ratio=0.50 limit_ratio=0.53 runs=3 spread=2.06")
    assert bench.targets(session) == (
        "targets: throughput_ratio >= 3: met (3.20); p95_ratio <= 1: met (0.50); "
        "limit_ratio >= 0.5: met (0.53)")


def test_targets_missed_are_said_so():
    session = made_up_session([(1000, 20)] * 3, [(2000, 25)] * 3, [10000] * 3)
    assert bench.targets(session) == (
        "targets: throughput_ratio >= 3: NOT met (2.00); p95_ratio <= 1: NOT met (1.25); "
        "limit_ratio >= 0.5: NOT met (0.20)")


def test_tables_show_median_and_min_max_over_runs():
    session = made_up_session([(1000, 20), (900, 30), (1100, 25)],
                              [(3000, 10), (2500, 12), (3500, 11)], [6000] * 3)
    rows = bench.table(session, "binary").splitlines()
    assert rows[2] == ("| baseline | 32 | 1000 (900–1100) | 25.0 (20.0–30.0) | 12.5 | 0 | 0.10 "
                       "| 1.50 | 0.20 |")
    assert rows[3].startswith("| shipped | 32 | 3000 (2500–3500) | 11.0 (10.0–12.0) |")
    report = bench.report(session)
    assert "Machine: 2 cores (test CPU)" in report
    assert report.rstrip().endswith("```") and bench.summary(session) in report


def test_update_readme_replaces_only_the_results_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench.README_START}\nold numbers\n{bench.README_END}\noutro\n")
    bench.update_readme(readme, "new numbers")
    assert readme.read_text() == (f"intro\n{bench.README_START}\nnew numbers\n"
                                  f"{bench.README_END}\noutro\n")
    (tmp_path / "other.md").write_text("no markers")
    with pytest.raises(bench.BenchError, match="no <!-- bench:start -->"):
        bench.update_readme(tmp_path / "other.md", "x")


def test_twin_settings_reach_the_twin_config_only():
    from tools.models.serve import THREADS_PARAMETER, twin_config

    shipped = bench.parse_config(ROOT_DIR / "model_repo/cifar10/config.pbtxt")
    twin = twin_config(shipped, TwinSettings(instances=2, torch_threads=3))
    (group,) = twin.instance_group
    assert (group.kind, group.count) == (group.KIND_CPU, 2)
    assert twin.parameters[THREADS_PARAMETER].string_value == "3"
    assert not shipped.parameters and shipped.instance_group[0].count == 1
    with pytest.raises(ValueError, match="must be >= 1"):
        TwinSettings(instances=0)


def test_pinned_instances_take_cores_round_robin_one_group_each(monkeypatch):
    from tritonclient.grpc import model_config_pb2 as mc

    from tools.models.serve import twin_config

    monkeypatch.setattr("tools.models.serve.usable_cores", lambda: [0, 1, 5])
    shipped = bench.parse_config(ROOT_DIR / "model_repo/cifar10/config.pbtxt")
    settings = TwinSettings(instances=2, pin_instances=True)
    # A second model (first_core=2) continues where the first one's instances stopped.
    for first, policies in ((0, ["core0", "core1"]), (2, ["core5", "core0"])):
        twin = twin_config(shipped, settings, first_core=first)
        assert [(g.kind, g.count, g.host_policy) for g in twin.instance_group] == [
            (mc.ModelInstanceGroup.KIND_CPU, 1, policy) for policy in policies]
    assert "pinned to core(s) 0,1" in settings.describe()
    assert "pinned" not in TwinSettings(instances=2).describe()


def test_server_settings_of_the_shipped_twin_and_triton_defaults(monkeypatch):
    assert TwinSettings().server_env() == {} and TwinSettings().server_args() == ()
    assert TwinSettings() == bench.BASELINE_TWIN
    env = SHIPPED_TWIN.server_env()
    assert env["LD_PRELOAD"].startswith("libjemalloc.so")
    monkeypatch.setattr("tools.models.serve.usable_cores", lambda: [0, 3])
    assert SHIPPED_TWIN.server_args() == ("--http-thread-count=2",
                                          "--host-policy=core0,cpu-cores=0-0",
                                          "--host-policy=core3,cpu-cores=3-3")
    monkeypatch.setenv("LD_PRELOAD", "libother.so")
    assert SHIPPED_TWIN.server_env()["LD_PRELOAD"].endswith(":libother.so")
    monkeypatch.setattr("ctypes.util.find_library", lambda name: None)
    with pytest.raises(ServerSetupError, match="libjemalloc2"):
        SHIPPED_TWIN.server_env()


def test_the_report_file_holds_a_results_block():
    text = (ROOT_DIR / bench.REPORT_FILE).read_text()
    block = text[text.index(bench.README_START):text.index(bench.README_END)]
    assert SUMMARY.search(block), "the documented results come from a `make bench` run"
    assert "Machine: " in block and "median (min–max)" in block
