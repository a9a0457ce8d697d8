"""The recorded resource graph of every stack file and of the variants that take other paths
through the program, as sorted JSON: one file per case, for diffing two versions of the program.

    python -m tests.graph_snapshot OUT_DIR        # write OUT_DIR/<case>.json
    python -m tests.graph_snapshot --diff A B     # compare two snapshot folders

A refactoring that claims "the graph doesn't change" proves it with `--diff` between a snapshot of
the base commit and one of the change: same URNs (names, types, parents), same inputs, same
dependencies, providers and options, same registered outputs, exports and invokes.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable
from pathlib import Path

from tests.deploy_probe import existing_cluster_and_bucket
from tests.harness import STACKS, Graph, evaluate, set_path, stack_config

SHIPPED = (*STACKS, "local")
OLD_VERSION = "0123456789abcdef0123"
CPU_MODEL = {"gpus": 0, "minReplicas": 1, "maxReplicas": 2, "cpu": "1", "memory": "2Gi"}


def _with(stack: str, **changes) -> Callable[[], dict[str, str]]:
    def config() -> dict[str, str]:
        values = stack_config(stack)
        for path, value in changes.items():
            values = set_path(values, path.replace("__", "."), value)
        return values
    return config


def _existing(**changes) -> Callable[[], dict[str, str]]:
    def config() -> dict[str, str]:
        values = existing_cluster_and_bucket()
        for path, value in changes.items():
            values = set_path(values, path.replace("__", "."), value)
        return values
    return config


SELDON = {"modelServing__backend": "seldon"}
PINNED = {"modelServing__models__cifar10__version": OLD_VERSION}
CANARY = {**PINNED, "modelServing__models__cifar10__canary": {"percent": 10}}
HPA = {"modelServing__models__cifar10__autoscaler": "hpa",
       "modelServing__models__cifar10__minReplicas": 1}
# The local stack on an S3-compatible store outside the cluster, keys in secret config.
EXTERNAL_STORE = {"platform__minio__enabled": False,
                  "modelBucket__endpoint": "https://s3.example.com",
                  "modelStoreAccessKeyId": "AKIAEXAMPLE",
                  "modelStoreSecretAccessKey": "example-secret"}
STORE_KEYS = ("mlserve:modelStoreAccessKeyId", "mlserve:modelStoreSecretAccessKey")


def _external_store(**changes) -> Callable[[], dict[str, str]]:
    build = _with("local", **EXTERNAL_STORE, **changes)

    def config() -> dict[str, str]:
        values = build()
        values.pop("mlserve:modelBucket", None)
        bucket = {"mode": "s3Compatible", "name": "models", "endpoint": "https://s3.example.com"}
        return set_path(values, "modelBucket", bucket)
    return config


# (case, stack, config builder or None for the stack file as shipped, secret config keys)
CASES: list[tuple[str, str, Callable[[], dict[str, str]] | None, tuple[str, ...]]] = [
    *[(stack, stack, None, ()) for stack in SHIPPED],
    *[(f"{stack}-seldon", stack, _with(stack, **SELDON), ()) for stack in STACKS],
    ("dev-existing", "dev", _existing(), ()),
    ("dev-existing-seldon", "dev", _existing(**SELDON), ()),
    ("dev-existing-pinned", "dev", _existing(**PINNED), ()),
    ("dev-pinned", "dev", _with("dev", **PINNED), ()),
    ("staging-canary", "staging", _with("staging", **CANARY), ()),
    ("staging-pinned-seldon", "staging", _with("staging", **PINNED, **SELDON), ()),
    ("local-pinned", "local", _with("local", **PINNED), ()),
    ("local-external-store", "local", _external_store(), STORE_KEYS),
    ("local-external-store-pinned", "local", _external_store(**PINNED), STORE_KEYS),
    ("dev-cpu-model", "dev", _with("dev", **{"modelServing__models__cifar10": CPU_MODEL}), ()),
    ("dev-hpa", "dev", _with("dev", **HPA), ()),
    ("dev-hpa-seldon", "dev", _with("dev", **HPA, **SELDON, **{
        "modelServing__models__cifar10__cooldownSeconds": 300}), ()),
    ("dev-no-keda", "dev", _with("dev", **HPA, **{"platform__keda__enabled": False}), ()),
    ("dev-no-monitoring", "dev", _with("dev", **HPA, **{
        "platform__keda__enabled": False, "platform__dcgmExporter__enabled": False,
        "platform__monitoring__enabled": False}), ()),
    ("dev-no-dcgm", "dev", _with("dev", **{"platform__dcgmExporter__enabled": False}), ()),
    ("dev-no-gpu-daemons", "dev", _with("dev", **{
        "platform__dcgmExporter__enabled": False,
        "platform__nvidiaDevicePlugin__enabled": False,
        "gpuNodeGroups[0]__amiType": "BOTTLEROCKET_x86_64_NVIDIA"}), ()),
    ("dev-bottlerocket", "dev", _with("dev", **{
        "gpuNodeGroups[0]__amiType": "BOTTLEROCKET_x86_64_NVIDIA"}), ()),
    ("dev-no-cluster-autoscaler", "dev", _with("dev", **{
        "platform__clusterAutoscaler__enabled": False, "gpuNodeGroups[0]__minSize": 1,
        "gpuCapacity__engine": "nodeGroups"}), ()),
    # Refused before anything is registered: the same message, nothing recorded.
    ("dev-refused", "dev", _with("dev", **{"platform__certManager__enabled": False}), ()),
]


def snapshot(graph: Graph) -> dict:
    """Everything the engine would receive, sorted; a program error by its message."""
    if graph.error is not None:
        return {"error": f"{type(graph.error).__name__}: {graph.error}"}
    return json.loads(graph.canonical())


def write(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for case, stack, config, secret_keys in CASES:
        graph = evaluate(stack, config=config() if config else None, secret_keys=secret_keys)
        (out / f"{case}.json").write_text(
            json.dumps(snapshot(graph), indent=1, sort_keys=True) + "\n")
        state = "error" if graph.error is not None else f"{len(graph.resources)} resources"
        print(f"{case}: {state}")


def diff(before: Path, after: Path) -> int:
    changed = 0
    names = sorted({p.name for folder in (before, after) for p in folder.glob("*.json")})
    for name in names:
        a, b = before / name, after / name
        old = a.read_text().splitlines() if a.exists() else []
        new = b.read_text().splitlines() if b.exists() else []
        if old != new:
            changed += 1
            sys.stdout.writelines(line + "\n" for line in difflib.unified_diff(
                old, new, str(a), str(b), lineterm="", n=2))
    print(f"{len(names)} cases, {changed} differ")
    return 1 if changed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.graph_snapshot")
    parser.add_argument("--diff", nargs=2, metavar=("BEFORE", "AFTER"), type=Path)
    parser.add_argument("out", nargs="?", type=Path)
    args = parser.parse_args(argv)
    if args.diff:
        return diff(*args.diff)
    if args.out is None:
        parser.error("give OUT_DIR or --diff BEFORE AFTER")
    write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
