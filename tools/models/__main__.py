"""python -m tools.models build|validate|hash|serve|bench|publish — see docs/models.md."""

from __future__ import annotations

import argparse
import dataclasses
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
    from tools.models.serve import SHIPPED_TWIN, ServerSetupError, TritonServer, write_twins

    repo = _validate(args.repository, torch_checks=True)
    with tempfile.TemporaryDirectory(prefix="mlserve-twins-") as work:
        settings = SHIPPED_TWIN if args.instances is None else dataclasses.replace(
            SHIPPED_TWIN, instances=args.instances)
        twins = write_twins(repo, Path(work) / "repo", settings)
        ports = {k: v for k, v in (("http_port", args.http_port), ("grpc_port", args.grpc_port),
                                   ("metrics_port", args.metrics_port)) if v}
        try:
            env = settings.server_env()
        except ServerSetupError as exc:
            print(f"serve: {exc}", file=sys.stderr)
            return 1
        server = TritonServer(str(twins), env=env, extra_args=settings.server_args(), **ports)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with server:  # Ctrl-C while it starts: KeyboardInterrupt, and start() stops it
            # From here on Ctrl-C only sets the event too: a KeyboardInterrupt raised between
            # two statements below (Ctrl-C right after the banner) would skip "stopped" and
            # exit non-zero.
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            print(f"Triton is serving {', '.join(repo.models)} (python-backend twins, CPU)")
            print(f"  V2 HTTP:  {server.url}   e.g. curl {server.url}/v2/models/"
                  f"{next(iter(repo.models))}")
            print(f"  V2 gRPC:  127.0.0.1:{server.grpc_port}")
            print(f"  metrics:  {server.metrics_url}")
            print("Ctrl-C to stop.", flush=True)
            stop.wait()
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
    from tools.models.loadgen import LoadGeneratorError
    from tools.models.serve import ServerSetupError

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    twin = bench.SHIPPED_TWIN
    try:
        twin = dataclasses.replace(twin, **{k: v for k, v in (
            ("instances", args.instances), ("torch_threads", args.torch_threads)) if v is not None})
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1

    try:
        session = bench.run(
            args.repository, args.baseline, args.shipped, pairs=args.pairs,
            concurrencies=[int(c) for c in args.concurrency.split(",")],
            formats=args.formats.split(","), seconds=args.seconds, warmup=args.warmup,
            twin=twin, noop=not args.no_noop, progress=progress)
    except (bench.BenchError, LoadGeneratorError, ServerSetupError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    failed = bench.failures(session)
    if failed:
        print("bench: requests failed, the results are void:\n  " + "\n  ".join(failed),
              file=sys.stderr)
        return 1
    section = bench.report(session)
    print(section)
    if args.markdown:
        args.markdown.write_text(section + "\n")
    if args.update_readme:
        report_file = (Path(bench.REPORT_FILE) if args.update_readme is True
                       else args.update_readme)
        bench.update_readme(report_file, section)
        print(f"{report_file}: Performance results replaced", file=sys.stderr)
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
    serve.add_argument("--instances", type=int,
                       help="python-backend instances (local only; default: the twin `make "
                            "bench` measures)")
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

    bench_parser = commands.add_parser(
        "bench", help="the shipped config against the tutorial's: interleaved runs, wrk load")
    bench_parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    bench_parser.add_argument("--shipped", type=Path,
                              help="a candidate config.pbtxt instead of the repository's")
    bench_parser.add_argument("--pairs", type=int, default=5,
                              help="baseline/shipped pairs, interleaved (at least 3 for a result)")
    bench_parser.add_argument("--concurrency", default="1,8,32,64")
    bench_parser.add_argument("--formats", default="binary,json",
                              help="request bodies: binary (binary-tensor extension), json (the "
                                   "tutorial client's)")
    bench_parser.add_argument("--seconds", type=int, default=5, help="per point")
    bench_parser.add_argument("--warmup", type=int, default=2, help="per body, per run")
    bench_parser.add_argument("--instances", type=int,
                              help="local twin: python-backend instances (default: shipped twin)")
    bench_parser.add_argument("--torch-threads", type=int,
                              help="local twin: torch threads per instance (default: shipped twin)")
    bench_parser.add_argument("--no-noop", action="store_true", help="skip the no-op model run")
    bench_parser.add_argument("--markdown", type=Path, help="also write the report here")
    bench_parser.add_argument("--update-readme", type=Path, metavar="FILE", nargs="?", const=True,
                              help="replace the results block of FILE (default: the bench's "
                                   "REPORT_FILE) with the report")
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
