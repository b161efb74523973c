"""Triton python-backend model that runs the exported artifact with its own runtime.

Copied into the model repository as 1/model.py beside runtime.py and the artifact. Used only
where the server has no native backend for the format.
"""

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if TYPE_CHECKING:  # the type checker reads the package's runtime.py; Triton loads the copy beside
    from deploysnake.runtime import ArtifactRuntime, options_from_config
else:
    from runtime import ArtifactRuntime, options_from_config


def _as_numpy(tensor: Any, bfloat16: bool) -> Any:
    """An input as numpy; a BF16 one (bfloat16: the config says so), which the stub's as_numpy()
    refuses, through DLPack and torch to an ml_dtypes bfloat16 array (the same 16-bit words)."""
    if not bfloat16:
        return tensor.as_numpy()
    import ml_dtypes
    import torch
    from torch.utils.dlpack import from_dlpack

    words = from_dlpack(tensor.to_dlpack()).view(torch.int16).numpy()
    return words.view(np.uint16).view(ml_dtypes.bfloat16)


def _tensor(name: str, array: Any) -> Any:
    """An output tensor; bfloat16 through torch and DLPack (the stub's numpy path has no BF16)."""
    array = np.ascontiguousarray(array)
    if array.dtype.name != "bfloat16":
        return pb_utils.Tensor(name, array)
    import torch
    from torch.utils.dlpack import to_dlpack  # type: ignore[attr-defined]

    words = torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    return pb_utils.Tensor.from_dlpack(name, to_dlpack(words))


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        self.bf16 = {t["name"] for t in config["input"] if t["data_type"] == "TYPE_BF16"}
        # dims [1] with reshape []: the model's tensor has no [1] axis, the client's has.
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.reshaped = {t["name"] for t in config["input"] + config["output"] if "reshape" in t}
        here = os.path.join(args["model_repository"], args["model_version"])
        # A KIND_GPU instance runs on the GPU Triton assigned to it.
        device = (
            f"cuda:{args['model_instance_device_id']}"
            if args.get("model_instance_kind") == "GPU"
            else "cpu"
        )
        # The runtime's knobs under the names Triton's onnxruntime and PyTorch backends read.
        options = options_from_config(config)
        self.runtime = ArtifactRuntime(
            os.path.join(here, params["artifact"]),
            params["format"],
            self.inputs,
            self.outputs,
            options.pop("threads"),
            device,
            sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1,
            **options,
        )
        # The server log states what each instance's runtime got (read back from the runtime).
        print(
            f"deploysnake runner {config.get('name', '')}: {self.runtime.describe()}",
            file=sys.stderr,
            flush=True,
        )

    def _in(self, name: str, array: Any) -> Any:
        if name not in self.reshaped:
            return array
        return array.reshape(array.shape[:1] if self.batched else ())

    def _out(self, name: str, array: Any) -> Any:
        if name not in self.reshaped:
            return array
        return np.reshape(array, (-1, 1) if self.batched else (1,))

    def execute(self, requests: list[Any]) -> list[Any]:
        if not self.batched:  # no batch axis: each request is one whole call, never joined
            return [self._execute([request])[0] for request in requests]
        return self._execute(requests)

    def _execute(self, requests: list[Any]) -> list[Any]:
        try:
            arrays = {
                n: [
                    self._in(n, _as_numpy(pb_utils.get_input_tensor_by_name(r, n), n in self.bf16))
                    for r in requests
                ]
                for n in self.inputs
            }
            sizes = [a.shape[0] if a.ndim else 1 for a in arrays[self.inputs[0]]]
            # Dynamic batching hands over several requests: run them as one batch, then split.
            batch = {n: a[0] if len(a) == 1 else np.concatenate(a) for n, a in arrays.items()}
            out = {n: self._out(n, v) for n, v in self.runtime(batch).items()}
        except Exception as exc:  # report to every client rather than crash the stub
            error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        if len(requests) == 1:
            tensors = [_tensor(n, out[n]) for n in self.outputs]
            return [pb_utils.InferenceResponse(output_tensors=tensors)]
        responses, start = [], 0
        for size in sizes:
            tensors = [_tensor(n, out[n][start : start + size]) for n in self.outputs]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
