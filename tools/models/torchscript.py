"""Checks that each TorchScript model does what its config.pbtxt says (needs torch).

Loads every version on CPU, runs one dummy batch at max_batch_size, and compares input count,
output count, dtypes and shapes with the config.
"""

from __future__ import annotations

import torch
from tritonclient.grpc import model_config_pb2 as mc

from modelrepo.repository import Model, Problem, Repository, RepositoryError

TORCH_DTYPES = {
    mc.TYPE_BOOL: torch.bool, mc.TYPE_UINT8: torch.uint8, mc.TYPE_INT8: torch.int8,
    mc.TYPE_INT16: torch.int16, mc.TYPE_INT32: torch.int32, mc.TYPE_INT64: torch.int64,
    mc.TYPE_FP16: torch.float16, mc.TYPE_FP32: torch.float32, mc.TYPE_FP64: torch.float64,
    mc.TYPE_BF16: torch.bfloat16,
}
# What a variable (-1) dimension becomes in the dummy batch.
VARIABLE_DIM = 32


def _shape(model: Model, dims: list[int]) -> list[int]:
    batch = [model.config.max_batch_size] if model.config.max_batch_size > 0 else []
    return batch + [VARIABLE_DIM if d == -1 else d for d in dims]


def _dummy(model: Model, tensor: mc.ModelInput) -> torch.Tensor:
    dtype = TORCH_DTYPES[tensor.data_type]
    shape = _shape(model, list(tensor.dims))
    if dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    return torch.ones(shape, dtype=dtype)


def check_model(model: Model, root_name: str) -> list[Problem]:
    if model.config.platform != "pytorch_libtorch":
        return []
    problems: list[Problem] = []
    for version in model.versions:
        where = f"{root_name}/{model.name}/{version}/{model.model_file}"
        try:
            module = torch.jit.load(str(model.path / str(version) / model.model_file),
                                    map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - any load failure is the finding
            problems.append((where, f"not a loadable TorchScript model on CPU: "
                            f"{str(exc).splitlines()[0]}"))
            continue
        arguments = [a for a in module.forward.schema.arguments if a.name != "self"]
        if len(arguments) != len(model.config.input):
            problems.append((where, f"forward takes {len(arguments)} input(s), config.pbtxt "
                            f"declares {len(model.config.input)}"))
            continue
        unsupported = [t.name for t in model.config.input if t.data_type not in TORCH_DTYPES]
        if unsupported:
            problems.append((where, f"inputs {unsupported}: no torch dtype for their data_type"))
            continue
        try:
            with torch.inference_mode():
                result = module(*[_dummy(model, t) for t in model.config.input])
        except Exception as exc:  # noqa: BLE001
            problems.append((where, f"fails on a dummy batch shaped as config.pbtxt says: "
                            f"{str(exc).splitlines()[-1]}"))
            continue
        outputs = list(result) if isinstance(result, (tuple, list)) else [result]
        if len(outputs) != len(model.config.output):
            problems.append((where, f"returns {len(outputs)} output(s), config.pbtxt declares "
                            f"{len(model.config.output)}"))
            continue
        for index, (tensor, declared) in enumerate(zip(outputs, model.config.output, strict=True)):
            field = f"output[{index}] ({declared.name})"
            expected_dtype = TORCH_DTYPES.get(declared.data_type)
            if tensor.dtype != expected_dtype:
                problems.append((where, f"{field}: model returns {tensor.dtype}, config.pbtxt "
                                f"data_type is {mc.DataType.Name(declared.data_type)}"))
            batch = [model.config.max_batch_size] if model.config.max_batch_size > 0 else []
            expected = batch + list(declared.dims)  # -1: any size
            matches = len(tensor.shape) == len(expected) and all(
                want == -1 or got == want for got, want in zip(tensor.shape, expected, strict=True))
            if not matches:
                problems.append((where, f"{field}: model returns shape {list(tensor.shape)}, "
                                f"config.pbtxt expects {expected}"))
    return problems


def check(repository: Repository) -> None:
    """Raise RepositoryError if any TorchScript model disagrees with its config."""
    problems = [p for model in repository.models.values()
                for p in check_model(model, repository.root.name)]
    if problems:
        raise RepositoryError(problems)
