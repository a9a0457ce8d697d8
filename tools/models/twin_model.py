"""Python-backend twin of a TorchScript model (copied next to model.pt by tools.models.serve).

Runs the same TorchScript the cluster's libtorch backend runs, on CPU. With dynamic batching,
Triton hands several requests to one execute(); same-shaped ones are concatenated into a single
forward pass, which is what batching buys.

execute() is on the serving path of every request: with one instance, Triton's next batch waits
for it. So the common case (every request has the same shapes, the usual closed-loop load) is one
concatenate, one forward and one slice per request, with no per-request Python beyond that.
"""

import gc
import json
import os

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

THREADS_PARAMETER = "torch_threads"  # set by tools.models.serve.twin_config


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.inputs = [t["name"] for t in config["input"]]
        # Triton checks each request carries every non-optional input and nothing else.
        self.single_input = len(config["input"]) == 1 and not config["input"][0].get("optional")
        self.outputs = [t["name"] for t in config["output"]]
        self.batched = config.get("max_batch_size", 0) > 0
        threads = config.get("parameters", {}).get(THREADS_PARAMETER, {}).get("string_value", "1")
        # Each instance runs one forward at a time; more threads than cores only contend.
        torch.set_num_threads(int(threads))
        path = os.path.join(args["model_repository"], args["model_version"], "model.pt")
        self.model = torch.jit.load(path, map_location="cpu").eval()
        # torch, numpy and the model are here for good: moved out of the collector's sight, the
        # full collections that per-request objects trigger no longer walk them (CPython gc docs,
        # gc.freeze).
        gc.collect()
        gc.freeze()

    def _forward(self, arrays):
        with torch.inference_mode():
            result = self.model(*[torch.from_numpy(a) for a in arrays])
        results = result if isinstance(result, (tuple, list)) else (result,)
        return [r.numpy() for r in results]

    def execute(self, requests):
        if self.single_input:  # no lookup by name
            arrays = [[r.inputs()[0].as_numpy()] for r in requests]
        else:
            arrays = [[pb_utils.get_input_tensor_by_name(r, name).as_numpy()
                       for name in self.inputs] for r in requests]
        if len(requests) == 1:
            return [self._respond(self._forward(arrays[0]))]
        if not self.batched:
            return [self._respond(self._forward(tensors)) for tensors in arrays]
        first = [a.shape[1:] for a in arrays[0]]
        if all([a.shape[1:] for a in tensors] == first for tensors in arrays):
            return self._forward_batch(arrays)
        # Mixed shapes (e.g. images of different sizes): one forward per shape.
        responses = [None] * len(requests)
        groups = {}
        for index, tensors in enumerate(arrays):
            groups.setdefault(tuple(a.shape[1:] for a in tensors), []).append(index)
        for members in groups.values():
            batch = self._forward_batch([arrays[i] for i in members])
            for index, response in zip(members, batch, strict=True):
                responses[index] = response
        return responses

    def _forward_batch(self, arrays):
        """One forward pass over the requests' tensors stacked on the batch dimension."""
        if len(arrays) == 1:
            return [self._respond(self._forward(arrays[0]))]
        merged = [np.concatenate([tensors[k] for tensors in arrays])
                  for k in range(len(self.inputs))]
        outputs = self._forward(merged)
        responses, offset = [], 0
        for tensors in arrays:
            size = tensors[0].shape[0]
            responses.append(self._respond([o[offset:offset + size] for o in outputs]))
            offset += size
        return responses

    def _respond(self, outputs):
        # A model may return a non-contiguous view; Triton needs contiguous buffers (a no-op for
        # slices along the batch dimension of a contiguous output).
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor(name, np.ascontiguousarray(value))
            for name, value in zip(self.outputs, outputs, strict=True)])
