"""A no-op twin for the benchmark (tools.models.bench): same name, tensors and batching as the
model, but execute() answers zeros without running anything.

Served in place of twin_model.py, it measures what the serving path and the load generator carry
on their own: if that is far above what the real twin serves, neither the client nor Triton's
HTTP front end is what limits the benchmark.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input = config["input"][0]["name"]
        self.batched = config.get("max_batch_size", 0) > 0
        self.outputs = [(o["name"], pb_utils.triton_string_to_numpy(o["data_type"]),
                         [max(d, 1) for d in o["dims"]]) for o in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            batch = pb_utils.get_input_tensor_by_name(request, self.input).as_numpy().shape[0]
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, np.zeros(([batch] if self.batched else []) + dims, dtype))
                for name, dtype, dims in self.outputs]))
        return responses
