"""Promote verified model versions from one stack to the next stage, model by model.

    python -m tools.promote --from dev --to staging [--model NAME]... [--version HASH] [--dry-run]

For each model (default: every model the source stack serves) the version is the source stack's
pin (`modelServing.models.<name>.version` in Pulumi.<from>.yaml), else the version it serves (its
`modelVersions` output). Each version is checked in the source bucket (its manifest's entries
hash to the version, every object's bytes match), copied server-side into the target bucket with
the target's credentials, checked the same way there, and its manifest written last. Only when
every model is copied are the pins written to Pulumi.<to>.yaml, in one compare-and-swap: if the
file changed during the copy, nothing is pinned (run again). Re-running is idempotent.

Stages follow each stack file's `mlserve:environment`, whatever the stacks are called:
dev -> staging -> prod; prod takes only versions pinned in the staging stack it is promoted
from. Every failure is one line (the stack file and key, or the S3 object, operation and AWS
error code) and exit code 1; the target's pins are then unchanged.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from components.config.bucket import ModelRepositoryConfig
from modelrepo.layout import HASH_LENGTH, VERSION
from modelrepo.registry import (
    RegistryError,
    check_version,
    copy_version,
    s3_client,
)
from tools.stack_files import StackFile, StackFileError

ROOT = Path(__file__).resolve().parent.parent
ORDER = ("dev", "staging", "prod")
MODEL = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
SERVING = "mlserve:modelServing"


class PromotionError(Exception):
    pass


def models_config(stack: StackFile) -> dict[str, Any]:
    models = stack.value(SERVING, "models")
    return models if isinstance(models, dict) else {}


def pins(stack: StackFile) -> dict[str, str]:
    """model -> the version pinned in the stack file."""
    return {name: str(settings["version"]) for name, settings in models_config(stack).items()
            if isinstance(settings, dict) and settings.get("version") is not None}


def pinned_version(stack_dir: Path, stack: str, model: str) -> str | None:
    return pins(StackFile.read(stack_dir, stack)).get(model)


def pin_key(model: str) -> tuple[str, ...]:
    return (SERVING, "models", model, "version")


def stage(stack: StackFile) -> str:
    environment = stack.value("mlserve:environment")
    if not environment:
        raise PromotionError(f"{stack.path.name}: mlserve:environment is not set; promotion "
                             "follows each stack's environment")
    return str(environment)


def check_stage_order(source: StackFile, target: StackFile) -> None:
    """dev -> staging -> prod by each stack's mlserve:environment, for any stack names."""
    frm, to = stage(source), stage(target)
    if frm in ORDER and to in ORDER and ORDER.index(to) == ORDER.index(frm) + 1:
        return
    outside = [f"{s.stack} ({e})" for s, e in ((source, frm), (target, to)) if e not in ORDER]
    raise PromotionError(
        f"promotion goes {' -> '.join(ORDER)} by mlserve:environment: {source.stack} ({frm}) -> "
        f"{target.stack} ({to}) "
        + (f"involves a stack that is no stage: {', '.join(outside)}" if outside
           else "skips or reverses a stage"))


def bucket_prefix(source: StackFile, target: StackFile) -> str:
    """The stacks' modelRepository.prefix; a version keeps its keys, so both must agree."""
    default = ModelRepositoryConfig.model_fields["prefix"].default
    prefixes = [s.value("mlserve:modelRepository", "prefix") or default for s in (source, target)]
    if prefixes[0] != prefixes[1]:
        raise PromotionError(f"modelRepository.prefix differs: {prefixes[0]!r} in "
                             f"{source.stack}, {prefixes[1]!r} in {target.stack}; pass --prefix "
                             "only if you mean to copy under one of them")
    return prefixes[0]


def stack_output(stack: str, name: str) -> Any:
    if shutil.which("pulumi") is None:
        raise PromotionError(f"can't read the `{name}` output of stack {stack}: the pulumi CLI "
                             "is not installed; pass what it gives explicitly (see --help)")
    result = subprocess.run(["pulumi", "stack", "output", name, "--json", "--stack", stack],
                            capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise PromotionError(f"pulumi stack output {name} --stack {stack}: "
                             f"{' '.join(result.stderr.split())}")
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise PromotionError(f"pulumi stack output {name} --stack {stack}: not JSON") from None


def source_versions(args: argparse.Namespace, source: StackFile) -> dict[str, str]:
    """model -> the version to promote: --version, else the source's pin, else what it serves."""
    names: Sequence[str] | None = args.model
    for name in names or ():
        if not MODEL.match(name):
            raise PromotionError(f"--model {name!r}: not a model name")
    if args.version:
        if not names or len(names) != 1:
            raise PromotionError("--version needs exactly one --model")
        return {names[0]: args.version}
    pinned = pins(source)
    served: dict[str, str] = {}
    if names is None or any(name not in pinned for name in names):
        served = stack_output(source.stack, "modelVersions")
        if not isinstance(served, dict):
            raise PromotionError(f"stack {source.stack}: the modelVersions output is not a "
                                 "mapping of model to version")
    versions = {}
    for name in names or sorted(served):
        version = pinned.get(name) or served.get(name)
        if version is None:
            raise PromotionError(f"stack {source.stack} serves no model {name!r} (it serves "
                                 f"{sorted(served) or sorted(pinned)})")
        versions[name] = str(version)
    if not versions:
        raise PromotionError(f"stack {source.stack} serves no model")
    return versions


def check_target_serves(target: StackFile, versions: dict[str, str]) -> None:
    """Pinning adds nothing else: the target must already list each model it is pinned for
    (a new entry under modelServing.models would change which models it serves)."""
    listed = models_config(target)
    missing = sorted(set(versions) - set(listed))
    if missing:
        raise PromotionError(
            f"{target.path.name}: modelServing.models has no entry for {', '.join(missing)} "
            f"(it lists {sorted(listed)}); add the model's serving settings there first, so "
            "pinning its version changes nothing else")


def promote(args: argparse.Namespace, source: Any = None, target: Any = None,
            copy_object: Any = None) -> dict[str, str]:
    """Copy, verify and pin; returns model -> version. Raises PromotionError, StackFileError or
    RegistryError (nothing pinned then)."""
    source_stack = StackFile.read(args.stack_dir, args.from_stack)
    target_stack = StackFile.read(args.stack_dir, args.to_stack)
    check_stage_order(source_stack, target_stack)
    versions = source_versions(args, source_stack)
    for name, version in versions.items():
        if not VERSION.match(version):
            raise PromotionError(f"{name}: {version!r} is not a model version ({HASH_LENGTH} hex "
                                 "characters)")
    if stage(target_stack) == "prod":
        staged = pins(source_stack)
        for name, version in versions.items():
            if staged.get(name) != version:
                raise PromotionError(
                    f"{name} {version} is not pinned in {source_stack.path.name} "
                    f"(modelServing.models.{name}.version): promote it to staging, and verify "
                    "it there, before prod")
    check_target_serves(target_stack, versions)
    prefix = args.prefix or bucket_prefix(source_stack, target_stack)
    # Refuse an edit that can't be made safely before anything is copied.
    pinned_text = target_stack.with_values({pin_key(n): v for n, v in versions.items()})
    source_bucket = args.source_bucket or stack_output(args.from_stack, "modelBucketName")
    target_bucket = args.target_bucket or stack_output(args.to_stack, "modelBucketName")
    source = source or s3_client(profile=args.source_profile, endpoint_url=args.endpoint_url)
    target = target or s3_client(profile=args.target_profile, endpoint_url=args.endpoint_url)
    commands = [f"pulumi config set --path modelServing.models.{name}.version {version} "
                f"--stack {args.to_stack}" for name, version in versions.items()]
    if args.dry_run:
        for name, version in versions.items():
            manifest = check_version(source, source_bucket, prefix, version, name)
            print(f"{name} {version}: would copy {len(manifest['files'])} object(s) from "
                  f"s3://{source_bucket} to s3://{target_bucket}")
        print("then pin them:\n  " + "\n  ".join(commands))
        return versions
    for name, version in versions.items():
        result = copy_version(source, target, source_bucket=source_bucket,
                              target_bucket=target_bucket, prefix=prefix, version=version,
                              model=name, copy_object=copy_object)
        print(f"{name} {version}: {result.copied} object(s) copied, {result.already_there} "
              f"already in s3://{target_bucket}, all verified")
    if pinned_text is None:
        print(f"already pinned in {target_stack.path.name}")
    else:
        target_stack.replace(pinned_text)
        print(f"pinned in {target_stack.path.name}: "
              + ", ".join(f"{n} {v}" for n, v in versions.items()))
    return versions


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.promote", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="from_stack", required=True)
    p.add_argument("--to", dest="to_stack", required=True)
    p.add_argument("--model", action="append",
                   help="promote this model (repeatable); default: every model the source "
                   "stack serves")
    p.add_argument("--version", help="with one --model: this version instead of the one the "
                   "source stack serves")
    p.add_argument("--dry-run", action="store_true",
                   help="verify the source versions and print the plan and the config commands")
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
    except (PromotionError, RegistryError, StackFileError) as exc:
        print(f"promote: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("promote: interrupted; nothing was pinned (copied versions without a manifest are "
              "never used; run again to finish)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
