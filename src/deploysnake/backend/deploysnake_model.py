"""The Python side of deploysnake's in-process Triton backend (libtriton_deploysnake.so).

Copied into the model repository as 1/deploysnake_model.py beside runtime.py and the artifact. The
backend calls TritonModel(config_json, version_dir, device) once per instance, then execute() once per
batch with each input's gathered bytes and shape; it splits the returned arrays by request rows.
"""

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if TYPE_CHECKING:  # the type checker reads the package's runtime.py; Triton loads the copy beside
    from deploysnake.runtime import ArtifactRuntime
else:
    from runtime import ArtifactRuntime

# Triton config data types -> numpy (the config JSON spells them TYPE_*).
DTYPES = {
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
}


class TritonModel:
    def __init__(self, model_config: str, version_dir: str, device: str) -> None:
        config = json.loads(model_config)
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.inputs = [(t["name"], np.dtype(DTYPES[t["data_type"]])) for t in config["input"]]
        self.outputs = [(t["name"], np.dtype(DTYPES[t["data_type"]])) for t in config["output"]]
        # Tensors declared dims [1] with reshape [] (a [batch] tensor, or a scalar unbatched): the
        # model's shape has no [1] axis; the client's has.
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.reshaped = {t["name"] for t in config["input"] + config["output"] if "reshape" in t}
        self.runtime = ArtifactRuntime(
            os.path.join(version_dir, params["artifact"]),
            params["format"],
            [n for n, _ in self.inputs],
            [n for n, _ in self.outputs],
            int(params.get("threads", "0")),
            device,
            sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1,
        )
        # The server log states what each instance's runtime got (read back from the runtime).
        print(
            f"deploysnake runner {config.get('name', '')}: {self.runtime.describe()}",
            file=sys.stderr,
            flush=True,
        )

    def execute(
        self, buffers: list[bytearray], shapes: list[tuple[int, ...]]
    ) -> list[NDArray[Any]]:
        batch = {
            name: np.frombuffer(data, dtype).reshape(self._model_shape(name, shape))
            for (name, dtype), data, shape in zip(self.inputs, buffers, shapes, strict=True)
        }
        out = self.runtime(batch)
        # Triton sends the bytes as the config's type: cast where the runtime returned another.
        return [
            np.ascontiguousarray(self._served(name, out[name]), dtype=dtype)
            for name, dtype in self.outputs
        ]

    def _model_shape(self, name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        if name not in self.reshaped:
            return shape
        return tuple(shape[:1]) if self.batched else ()

    def _served(self, name: str, array: NDArray[Any]) -> NDArray[Any]:
        if name not in self.reshaped:
            return array
        return np.reshape(array, (-1, 1) if self.batched else (1,))
