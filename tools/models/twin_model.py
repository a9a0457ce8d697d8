"""Python-backend twin of a TorchScript model (copied next to model.pt by tools.models.serve).

Runs the same TorchScript the cluster's libtorch backend runs, on CPU. With dynamic batching,
Triton hands several requests to one execute(); same-shaped ones are concatenated into a single
forward pass, which is what batching buys.
"""

import json
import os

import numpy as np
import torch
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        self.batched = config.get("max_batch_size", 0) > 0
        # Each instance runs one forward at a time; more threads than cores only contend.
        torch.set_num_threads(int(os.environ.get("MLSERVE_TORCH_THREADS", "1")))
        path = os.path.join(args["model_repository"], args["model_version"], "model.pt")
        self.model = torch.jit.load(path, map_location="cpu").eval()

    def _forward(self, arrays):
        with torch.inference_mode():
            result = self.model(*[torch.from_numpy(a) for a in arrays])
        results = result if isinstance(result, (tuple, list)) else (result,)
        return [r.numpy() for r in results]

    def execute(self, requests):
        arrays = [[pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs]
                  for r in requests]
        responses = [None] * len(requests)
        groups = {}
        for index, tensors in enumerate(arrays):
            key = tuple(a.shape[1:] if self.batched else a.shape for a in tensors)
            groups.setdefault(key, []).append(index)
        for members in groups.values():
            if self.batched and len(members) > 1:
                merged = [np.concatenate([arrays[i][k] for i in members])
                          for k in range(len(self.inputs))]
                outputs = self._forward(merged)
                offset = 0
                for i in members:
                    size = arrays[i][0].shape[0]
                    responses[i] = self._respond([o[offset:offset + size] for o in outputs])
                    offset += size
            else:
                for i in members:
                    responses[i] = self._respond(self._forward(arrays[i]))
        return responses

    def _respond(self, outputs):
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor(name, np.ascontiguousarray(value))
            for name, value in zip(self.outputs, outputs)])
