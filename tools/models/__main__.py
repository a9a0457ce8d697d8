"""python -m tools.models build|validate|hash|serve|bench|publish — see README, "Models"."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path

from modelrepo import repository

DEFAULT_REPOSITORY = Path("model_repo")
DEFAULT_BASELINE = Path("bench/baseline/cifar10/config.pbtxt")


def _validate(repo_root: Path, *, torch_checks: bool) -> repository.Repository:
    repo = repository.load(repo_root)
    if torch_checks:
        from tools.models import torchscript

        torchscript.check(repo)
    return repo


def cmd_build(args: argparse.Namespace) -> int:
    from tools.models.build import build

    result = build(args.repository, args.dataset)
    print(f"{result.path}: {result.detail}")
    _validate(args.repository, torch_checks=True)
    print(f"{args.repository}: valid")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    repo = _validate(args.repository, torch_checks=not args.no_torch)
    checks = "layout and configs" + ("" if args.no_torch else ", TorchScript on CPU")
    versions = ", ".join(f"{name} {model.content_hash}" for name, model in sorted(
        repo.models.items()))
    print(f"{args.repository}: valid ({len(repo.models)} model(s): {', '.join(repo.models)}; "
          f"{checks}); versions: {versions}")
    return 0


def _models(repo: repository.Repository, names: list[str] | None) -> list[str]:
    unknown = sorted(set(names or ()) - set(repo.models))
    if unknown:
        raise repository.RepositoryError([(f"{repo.root.name}/{name}", f"no such model (have "
                                           f"{sorted(repo.models)})") for name in unknown])
    return sorted(names or repo.models)


def cmd_hash(args: argparse.Namespace) -> int:
    """Each model's version (its own content hash), one `<model> <version>` line per model;
    with one --model, the bare version."""
    repo = repository.load(args.repository)
    names = _models(repo, args.model)
    if args.model and len(names) == 1:
        print(repo.models[names[0]].content_hash)
        return 0
    for name in names:
        print(f"{name} {repo.models[name].content_hash}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from tools.models.serve import TritonServer, write_twins

    repo = _validate(args.repository, torch_checks=True)
    with tempfile.TemporaryDirectory(prefix="mlserve-twins-") as work:
        twins = write_twins(repo, Path(work) / "repo", instances=args.instances)
        ports = {k: v for k, v in (("http_port", args.http_port), ("grpc_port", args.grpc_port),
                                   ("metrics_port", args.metrics_port)) if v}
        server = TritonServer(str(twins), **ports)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with server:
            print(f"Triton is serving {', '.join(repo.models)} (python-backend twins, CPU)")
            print(f"  V2 HTTP:  {server.url}   e.g. curl {server.url}/v2/models/"
                  f"{next(iter(repo.models))}")
            print(f"  V2 gRPC:  127.0.0.1:{server.grpc_port}")
            print(f"  metrics:  {server.metrics_url}")
            print("Ctrl-C to stop.", flush=True)
            try:
                stop.wait()
            except KeyboardInterrupt:
                pass
        print("stopped")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Validate the whole repository (a broken model stops everything), then upload each chosen
    model under its own version, manifest last. Prints `<model> <version>` per model."""
    from modelrepo.layout import manifest_key, version_uri
    from modelrepo.registry import publish_model, s3_client

    repo = _validate(args.repository, torch_checks=not args.no_torch)
    names = _models(repo, args.model)
    s3 = s3_client(profile=args.profile, endpoint_url=args.endpoint_url)
    for name in names:
        version = publish_model(s3, repo, name, args.bucket, args.prefix)
        print(f"published {name} at {version_uri(args.bucket, args.prefix, version)} "
              f"({len(repo.models[name].files)} files, manifest "
              f"{manifest_key(args.prefix, version)})", file=sys.stderr)
        print(f"{name} {version}", flush=True)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from tools.models import bench

    if args.sweep:
        delays = [int(d) for d in args.sweep.split(",")]
        points = bench.sweep_queue_delay(args.repository, delays,
                                         concurrency=bench.REFERENCE_CONCURRENCY,
                                         seconds=args.seconds, warmup=args.warmup)
        print(f"max_queue_delay_microseconds sweep, shipped config, "
              f"{bench.REFERENCE_CONCURRENCY} clients:\n")
        print(bench.table(points), end="\n\n", flush=True)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    points = bench.run(args.repository, args.baseline, concurrencies=concurrencies,
                       seconds=args.seconds, warmup=args.warmup)
    print(bench.table(points))
    print()
    print(bench.summary(points))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.models", description=__doc__)
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="build model_repo/cifar10 (train if CIFAR-10 is "
                                               "given, else seeded weights)")
    build.add_argument("--dataset", type=Path, help="folder with CIFAR-10's python batches")
    build.set_defaults(func=cmd_build)

    validate = commands.add_parser("validate", help="check layout, configs and TorchScript")
    validate.add_argument("--no-torch", action="store_true",
                          help="layout and configs only (what the stack checks before upload)")
    validate.set_defaults(func=cmd_validate)

    hash_parser = commands.add_parser("hash", help="print each model's version (its own "
                                      "content hash)")
    hash_parser.add_argument("--model", action="append",
                             help="only this model (repeatable); one model prints the bare hash")
    hash_parser.set_defaults(func=cmd_hash)

    serve = commands.add_parser("serve", help="serve on a real local Triton until Ctrl-C")
    serve.add_argument("--http-port", type=int, default=8000)
    serve.add_argument("--grpc-port", type=int, default=8001)
    serve.add_argument("--metrics-port", type=int, default=8002)
    serve.add_argument("--instances", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    publish = commands.add_parser("publish", help="validate, then upload each model under its "
                                  "own version, manifest last; prints `<model> <version>` lines")
    publish.add_argument("--bucket", required=True)
    publish.add_argument("--model", action="append",
                         help="publish only this model (repeatable); default: every model")
    publish.add_argument("--prefix", default="models")
    publish.add_argument("--profile")
    publish.add_argument("--endpoint-url", help="S3-compatible endpoint (tests, MinIO)")
    publish.add_argument("--no-torch", action="store_true")
    publish.set_defaults(func=cmd_publish)

    bench_parser = commands.add_parser("bench", help="shipped config vs the tutorial's")
    bench_parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    bench_parser.add_argument("--concurrency", default="1,8,32,64")
    bench_parser.add_argument("--seconds", type=float, default=10.0)
    bench_parser.add_argument("--warmup", type=float, default=2.0)
    bench_parser.add_argument("--sweep", default="",
                              help="comma-separated max_queue_delay_microseconds to try first")
    bench_parser.set_defaults(func=cmd_bench)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except repository.RepositoryError as exc:
        print(exc, file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - registry and S3 errors, reported plainly
        from modelrepo.registry import RegistryError

        if not isinstance(exc, RegistryError):
            raise
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
