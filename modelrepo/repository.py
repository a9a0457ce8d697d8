"""Reads, validates and hashes a Triton model repository.

Uses only the lean runtime requirements (Triton's own protobuf from `tritonclient`), because the
stack runs it before uploading: a broken repository stops `pulumi up` before anything is touched.
Every problem names the file and the field, and all of them are reported together.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from modelrepo.layout import hash_of_digests

SKIPPED_AT_ROOT = ("README.md",)
CONFIG_FILE = "config.pbtxt"
CUSTOM_CONFIGS = "configs"
# Default model file per platform/backend (Triton's defaults).
DEFAULT_MODEL_FILE = {
    "pytorch_libtorch": "model.pt",
    "onnxruntime_onnx": "model.onnx",
    "tensorrt_plan": "model.plan",
    "tensorflow_savedmodel": "model.savedmodel",
    "python": "model.py",
}
BACKEND_OF_PLATFORM = {"pytorch_libtorch": "pytorch", "onnxruntime_onnx": "onnxruntime",
                       "tensorrt_plan": "tensorrt", "tensorflow_savedmodel": "tensorflow"}
LIBTORCH_NAME = re.compile(r"^(?P<name>.+)__(?P<index>\d+)$")
MAX_QUEUE_DELAY_US = 1_000_000


Problem = tuple[str, str]
"""(file, message): the file (relative to the repository's parent folder, e.g.
`model_repo/cifar10/config.pbtxt`) and what is wrong with it (the message does not repeat it)."""


class RepositoryError(Exception):
    """A repository Triton would refuse or serve wrongly; lists every problem found.

    `located` holds the (file, message) pairs; `problems` the same, each rendered as one line,
    `<file>: <message>` (the stack reports them with its own, located at their files)."""

    def __init__(self, problems: Sequence[Problem]):
        self.located = list(problems)
        self.problems = [f"{where}: {message}" for where, message in self.located]
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid model repository ({len(self.problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class Model:
    name: str
    path: Path
    config: mc.ModelConfig
    versions: tuple[int, ...]
    custom_configs: tuple[str, ...] = ()
    """Names of configs/<name>.pbtxt, chosen with tritonserver --model-config-name=<name>."""
    files: tuple[str, ...] = ()
    """The model's files, relative to the repository root (`<name>/...`), sorted."""
    content_hash: str = ""
    """This model's own version: a hash over its files' paths and bytes. Changing one model
    gives that model a new version and leaves every other model's unchanged."""

    @property
    def kind(self) -> str:
        """The platform, or the backend when no platform is set."""
        return self.config.platform or self.config.backend

    @property
    def model_file(self) -> str:
        return self.config.default_model_filename or DEFAULT_MODEL_FILE.get(self.kind, "")


@dataclass(frozen=True)
class Repository:
    root: Path
    models: dict[str, Model]
    files: tuple[str, ...]
    """Every file the upload carries, relative to root, sorted."""
    content_hash: str
    """Hash over every file's path and bytes: same content, same hash; any change, a new one."""


def repository_files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).as_posix() not in SKIPPED_AT_ROOT
    )


def content_hash(root: Path, files: Iterable[str]) -> str:
    return hash_of_digests((relative, hashlib.sha256((root / relative).read_bytes()).digest())
                           for relative in files)


def _where(model: Path, root: Path) -> str:
    return (root.name + "/" + model.relative_to(root).as_posix()) if model != root else root.name


def _check_layout(root: Path) -> tuple[list[Path], list[Problem]]:
    problems, model_dirs = [], []
    for entry in sorted(root.iterdir()):
        where = f"{root.name}/{entry.name}"
        if entry.is_file():
            if entry.name not in SKIPPED_AT_ROOT:
                problems.append((where, "only model folders belong at the top of a repository"))
        elif entry.name.startswith((".", "__")):
            problems.append((where, "Triton would try to load this folder as a model; "
                            "remove it"))
        else:
            model_dirs.append(entry)
    if not model_dirs and not problems:
        problems.append((root.name, "no model folders"))
    return model_dirs, problems


def _parse_config(path: Path, where: str) -> tuple[mc.ModelConfig | None, list[Problem]]:
    if not path.is_file():
        return None, [(f"{where}/{CONFIG_FILE}", "missing (every model needs its config)")]
    config = mc.ModelConfig()
    try:
        text_format.Parse(path.read_text(), config)
    except text_format.ParseError as exc:
        return None, [(f"{where}/{CONFIG_FILE}", f"{exc}")]
    return config, []


def _check_tensors(config: mc.ModelConfig, file: str) -> list[Problem]:
    problems = []
    for kind, tensors in (("input", config.input), ("output", config.output)):
        if not tensors:
            problems.append((file, f"{kind}: at least one {kind} is required"))
        names = [t.name for t in tensors]
        for index, tensor in enumerate(tensors):
            field = f"{kind}[{index}]"
            if not tensor.name:
                problems.append((file, f"{field}.name: must be set"))
            elif names.count(tensor.name) > 1:
                problems.append((file, f"{field}.name: {tensor.name!r} is used twice"))
            if tensor.data_type == mc.TYPE_INVALID:
                problems.append((file, f"{field}.data_type: must be set"))
            if not tensor.dims:
                problems.append((file, f"{field}.dims: must be set"))
            if any(d == 0 or d < -1 for d in tensor.dims):
                problems.append((file, f"{field}.dims: each must be -1 or > 0, "
                                f"got {list(tensor.dims)}"))
        if config.platform == "pytorch_libtorch":
            problems += _libtorch_names(tensors, kind, file)
    return problems


def _libtorch_names(tensors: Sequence[mc.ModelInput | mc.ModelOutput], kind: str,
                    file: str) -> list[Problem]:
    """libtorch binds tensors by position: names must be `<name>__<index>`, indices 0..n-1."""
    problems, indices = [], []
    for index, tensor in enumerate(tensors):
        match = LIBTORCH_NAME.match(tensor.name)
        if match is None:
            problems.append((file, f"{kind}[{index}].name: must follow the libtorch "
                            f"convention <name>__<index>, got {tensor.name!r}"))
        else:
            indices.append(int(match["index"]))
    if not problems and sorted(indices) != list(range(len(tensors))):
        problems.append((file, f"{kind}: libtorch indices must be 0..{len(tensors) - 1}, "
                        f"got {sorted(indices)}"))
    return problems


def _check_batching(config: mc.ModelConfig, file: str) -> list[Problem]:
    problems = []
    if config.max_batch_size < 0:
        problems.append((file, f"max_batch_size: must be >= 0, got {config.max_batch_size}"))
    if config.HasField("dynamic_batching"):
        batching = config.dynamic_batching
        if config.max_batch_size == 0:
            problems.append((file, "dynamic_batching: needs max_batch_size > 0"))
        if batching.max_queue_delay_microseconds > MAX_QUEUE_DELAY_US:
            problems.append((file, f"dynamic_batching.max_queue_delay_microseconds: must be <= "
                            f"{MAX_QUEUE_DELAY_US}, got {batching.max_queue_delay_microseconds}"))
        too_big = [b for b in batching.preferred_batch_size if b > config.max_batch_size]
        if too_big:
            problems.append((file, f"dynamic_batching.preferred_batch_size: must be <= "
                            f"max_batch_size ({config.max_batch_size}), got {too_big}"))
    for index, group in enumerate(config.instance_group):
        if group.count < 0:
            problems.append((file, f"instance_group[{index}].count: must be >= 1, "
                            f"got {group.count}"))
    return problems


def _check_config(config: mc.ModelConfig, path: Path, file: str) -> list[Problem]:
    problems = []
    if config.name and config.name != path.name:
        problems.append((file, f"name: must match the folder name {path.name!r}, "
                        f"got {config.name!r}"))
    kind = config.platform or config.backend
    if not kind:
        problems.append((file, "platform: set platform or backend"))
    elif config.platform and config.platform not in DEFAULT_MODEL_FILE:
        problems.append((file, f"platform: must be one of {sorted(BACKEND_OF_PLATFORM)}, "
                        f"got {config.platform!r}"))
    problems += _check_tensors(config, file)
    problems += _check_batching(config, file)
    for index, output in enumerate(config.output):
        if output.label_filename and not (path / output.label_filename).is_file():
            problems.append((file, f"output[{index}].label_filename: {output.label_filename} "
                            f"is not in the model's folder {path.name}/"))
    return problems


def _check_model(path: Path, root: Path) -> tuple[Model | None, list[Problem]]:
    where = _where(path, root)
    config, problems = _parse_config(path / CONFIG_FILE, where)
    if config is None:
        return None, problems
    file = f"{where}/{CONFIG_FILE}"
    problems += _check_config(config, path, file)
    kind = config.platform or config.backend

    custom = []
    for entry in sorted((path / CUSTOM_CONFIGS).glob("*")) if (path / CUSTOM_CONFIGS).is_dir() \
            else []:
        custom_file = f"{where}/{CUSTOM_CONFIGS}/{entry.name}"
        if entry.suffix != ".pbtxt":
            problems.append((custom_file, f"only <name>.pbtxt files belong in {CUSTOM_CONFIGS}/"))
            continue
        alternative = mc.ModelConfig()
        try:
            text_format.Parse(entry.read_text(), alternative)
        except text_format.ParseError as exc:
            problems.append((custom_file, f"{exc}"))
            continue
        problems += _check_config(alternative, path, custom_file)
        custom.append(entry.stem)

    versions = []
    for entry in sorted(path.iterdir()):
        if entry.is_dir() and entry.name != CUSTOM_CONFIGS:
            if not entry.name.isdigit():
                problems.append((f"{where}/{entry.name}", "version folders must be numbers"))
                continue
            versions.append(int(entry.name))
    if not versions:
        problems.append((where, f"no version folder (e.g. {where}/1/)"))
    model = Model(name=path.name, path=path, config=config, versions=tuple(sorted(versions)),
                  custom_configs=tuple(custom))
    if model.model_file:
        for version in model.versions:
            if not (path / str(version) / model.model_file).exists():
                problems.append((f"{where}/{version}/{model.model_file}",
                                 f"missing (the model file for platform {kind!r})"))
    elif kind:
        problems.append((file, f"default_model_filename: must be set for {kind!r}"))
    return model, problems


def load(root: Path, models: Sequence[str] | None = None) -> Repository:
    """Validate the repository at `root` (layout and every config.pbtxt) and hash it."""
    root = Path(root)
    if not root.is_dir():
        raise RepositoryError([(str(root), "not a directory")])
    model_dirs, problems = _check_layout(root)
    found: dict[str, Model] = {}
    for path in model_dirs:
        model, model_problems = _check_model(path, root)
        problems += model_problems
        if model is not None:
            found[model.name] = model
    for name in models or ():
        if name not in found and not any(where.startswith(f"{root.name}/{name}")
                                          for where, _ in problems):
            problems.append((f"{root.name}/{name}", f"no such model (have {sorted(found)})"))
    if problems:
        raise RepositoryError(problems)
    files = repository_files(root)
    for name, model in found.items():
        own = tuple(f for f in files if f.startswith(f"{name}/"))
        found[name] = replace(model, files=own, content_hash=content_hash(root, own))
    return Repository(root=root, models=found, files=tuple(files),
                      content_hash=content_hash(root, files))
