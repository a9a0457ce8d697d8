"""Promote a verified model version from one stack's bucket to the next stack's.

    python -m tools.promote --from dev --to staging [--version HASH] [--dry-run]

Reads the version the source stack serves (its pinned `modelRepository.version`, else its
`modelContentHash` stack output), copies that version's objects server-side into the target
bucket with the target's credentials, verifies every object against the manifest, writes the
target manifest last, then pins the version in Pulumi.<target>.yaml. Re-running is idempotent. A
missing or corrupted object aborts with the target's pinned version unchanged. Promotion to prod
requires the version to be pinned in staging first.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from components.config import ModelRepositoryConfig
from tools.registry import RegistryError, copy_version, read_manifest, s3_client, verify

ROOT = Path(__file__).resolve().parent.parent
ORDER = ("dev", "staging", "prod")
VERSION = re.compile(r"^[0-9a-f]{20}$")


class PromotionError(Exception):
    pass


def stack_file(stack_dir: Path, stack: str) -> Path:
    return stack_dir / f"Pulumi.{stack}.yaml"


def repository_config(stack_dir: Path, stack: str) -> dict[str, Any]:
    path = stack_file(stack_dir, stack)
    if not path.is_file():
        raise PromotionError(f"{path}: no such stack file")
    config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    return config.get("mlserve:modelRepository") or {}


def pinned_version(stack_dir: Path, stack: str) -> str | None:
    return repository_config(stack_dir, stack).get("version")


def bucket_prefix(stack_dir: Path, from_stack: str, to_stack: str) -> str:
    """The stacks' modelRepository.prefix; a version keeps its keys, so both must agree."""
    default = ModelRepositoryConfig.model_fields["prefix"].default
    prefixes = {stack: repository_config(stack_dir, stack).get("prefix", default)
                for stack in (from_stack, to_stack)}
    if prefixes[from_stack] != prefixes[to_stack]:
        raise PromotionError(f"modelRepository.prefix differs: {prefixes[from_stack]!r} in "
                             f"{from_stack}, {prefixes[to_stack]!r} in {to_stack}; pass --prefix "
                             "only if you mean to copy under one of them")
    return prefixes[from_stack]


def stack_output(stack: str, name: str) -> str:
    if shutil.which("pulumi") is None:
        raise PromotionError(f"can't read `{name}` of stack {stack}: the pulumi CLI is not "
                             "installed; pass it explicitly (see --help)")
    result = subprocess.run(["pulumi", "stack", "output", name, "--stack", stack],
                            capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise PromotionError(f"pulumi stack output {name} --stack {stack}: "
                             f"{result.stderr.strip()}")
    return result.stdout.strip()


def pinned_text(stack_dir: Path, stack: str, version: str) -> str | None:
    """The stack file with mlserve:modelRepository.version set, comments kept; None when it is
    pinned already. Refuses layouts it can't edit safely (flow style, duplicate keys, keys
    after `config:`), before anything is copied."""
    path = stack_file(stack_dir, stack)
    text = path.read_text()
    lines = text.splitlines()
    mentions = [i for i, line in enumerate(lines)
                if line.lstrip().startswith("mlserve:modelRepository:")]
    header = next((i for i in mentions if lines[i].rstrip() == "  mlserve:modelRepository:"),
                  None)
    top_level = [line for line in lines if line and not line.startswith((" ", "#"))]
    if len(mentions) > 1 or (mentions and header is None) or top_level != ["config:"]:
        raise PromotionError(f"{path}: can't pin safely (mlserve:modelRepository must be a "
                             "block under `config:`, the file's only top-level key); run "
                             f"`pulumi config set --path modelRepository.version {version} "
                             f"--stack {stack}` instead")
    if header is None:
        lines += ["  mlserve:modelRepository:", f"    version: {version}"]
    else:
        end = next((i for i in range(header + 1, len(lines))
                    if lines[i].strip() and not lines[i].startswith("    ")), len(lines))
        existing = next((i for i in range(header + 1, end)
                         if lines[i].startswith("    version:")), None)
        if existing is not None:
            if lines[existing].split(":", 1)[1].strip() == version:
                return None
            lines[existing] = f"    version: {version}"
        else:
            lines.insert(header + 1, f"    version: {version}")
    new = "\n".join(lines) + "\n"
    try:
        if pinned_from_text(new) != version:
            raise PromotionError(f"{path}: could not pin the version safely; edit it by hand")
    except yaml.YAMLError as exc:
        raise PromotionError(f"{path}: not valid YAML after pinning: {exc}") from None
    return new


def pin(stack_dir: Path, stack: str, version: str) -> bool:
    """Set mlserve:modelRepository.version in the stack file; returns whether it changed."""
    return _write(stack_dir, stack, pinned_text(stack_dir, stack, version))


def _write(stack_dir: Path, stack: str, text: str | None) -> bool:
    if text is not None:
        stack_file(stack_dir, stack).write_text(text)
    return text is not None


def pinned_from_text(text: str) -> str | None:
    config = (yaml.safe_load(text) or {}).get("config") or {}
    return (config.get("mlserve:modelRepository") or {}).get("version")


def promote(args: argparse.Namespace, source: Any = None, target: Any = None,
            copy_object: Any = None) -> str:
    stages = (args.from_stack, args.to_stack)
    if all(s in ORDER for s in stages) and ORDER.index(stages[1]) != ORDER.index(stages[0]) + 1:
        raise PromotionError(f"promotion goes {' -> '.join(ORDER)}: {args.from_stack} -> "
                             f"{args.to_stack} skips or reverses a stage")
    version = (args.version or pinned_version(args.stack_dir, args.from_stack)
               or stack_output(args.from_stack, "modelContentHash"))
    if not VERSION.match(version):
        raise PromotionError(f"{version!r} is not a model version (20 hex characters)")
    if args.to_stack == "prod" and pinned_version(args.stack_dir, "staging") != version:
        raise PromotionError(f"{version} is not pinned in staging: promote it to staging (and "
                             "verify it there) before prod")
    prefix = args.prefix or bucket_prefix(args.stack_dir, args.from_stack, args.to_stack)
    source_bucket = args.source_bucket or stack_output(args.from_stack, "modelBucketName")
    target_bucket = args.target_bucket or stack_output(args.to_stack, "modelBucketName")
    source = source or s3_client(profile=args.source_profile, endpoint_url=args.endpoint_url)
    target = target or s3_client(profile=args.target_profile, endpoint_url=args.endpoint_url)
    command = (f"pulumi config set --path modelRepository.version {version} "
               f"--stack {args.to_stack}")
    if args.dry_run:
        manifest = read_manifest(source, source_bucket, prefix, version)
        problems = verify(source, source_bucket, prefix, manifest)
        if problems:
            raise RegistryError("source version is corrupted:\n  " + "\n  ".join(problems))
        print(f"would copy {len(manifest['files'])} object(s) of {version} from "
              f"s3://{source_bucket} to s3://{target_bucket}, then run:\n  {command}")
        return version
    pinned = pinned_text(args.stack_dir, args.to_stack, version)  # refuse before copying
    result = copy_version(source, target, source_bucket=source_bucket,
                          target_bucket=target_bucket, prefix=prefix, version=version,
                          copy_object=copy_object)
    changed = _write(args.stack_dir, args.to_stack, pinned)
    print(f"{version}: {result.copied} object(s) copied, {result.already_there} already in "
          f"s3://{target_bucket}, all verified; "
          + (f"pinned in {stack_file(args.stack_dir, args.to_stack).name}"
             if changed else f"already pinned in {args.to_stack}"))
    return version


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.promote", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="from_stack", required=True)
    p.add_argument("--to", dest="to_stack", required=True)
    p.add_argument("--version", help="default: the version the source stack serves")
    p.add_argument("--dry-run", action="store_true",
                   help="verify the source and print the plan and the config command only")
    p.add_argument("--source-bucket", help="default: the source stack's modelBucketName")
    p.add_argument("--target-bucket", help="default: the target stack's modelBucketName")
    p.add_argument("--source-profile", help="AWS profile for reading the source bucket")
    p.add_argument("--target-profile", help="AWS profile for writing the target bucket")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (tests, MinIO)")
    p.add_argument("--prefix", help="default: the stacks' modelRepository.prefix")
    p.add_argument("--stack-dir", type=Path, default=ROOT)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        promote(args)
    except (PromotionError, RegistryError) as exc:
        print(f"promote: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

