"""The Python side of deploysnake's in-process Triton backend (libtriton_deploysnake.so).

Copied into the model repository as 1/deploysnake_model.py beside runtime.py and the artifact. The
backend calls TritonModel(config_json, version_dir, device) once per instance, then execute() once per
batch with each input's gathered bytes and shape; it splits the returned arrays by request rows.
String (BYTES) inputs arrive length-prefixed and are given to the runtime as object arrays of bytes; a
model with a string output is served by the python backend's runner instead (repository.py).
"""

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from tritonclient.utils import deserialize_bytes_tensor, triton_to_np_dtype

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if TYPE_CHECKING:  # the type checker reads the package's runtime.py; Triton loads the copy beside
    from deploysnake.runtime import ArtifactRuntime, options_from_config
else:
    from runtime import ArtifactRuntime, options_from_config


def config_dtype(type_name: str) -> Any:
    """numpy's dtype of a config data_type ("TYPE_FP32"; "TYPE_STRING": object, an array of bytes),
    from tritonclient.utils' map of Triton's wire names (BF16 through ml_dtypes)."""
    wire = "BYTES" if type_name == "TYPE_STRING" else type_name.removeprefix("TYPE_")
    return np.dtype(triton_to_np_dtype(wire))


def _words(array: NDArray[Any]) -> NDArray[Any]:
    """bfloat16 (ml_dtypes, a dtype numpy does not export through the buffer protocol) as its raw
    16-bit words, the bytes Triton sends as BF16; every other array as it is."""
    return array.view(np.uint16) if array.dtype.name == "bfloat16" else array


class TritonModel:
    def __init__(self, model_config: str, version_dir: str, device: str) -> None:
        config = json.loads(model_config)
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.inputs = [(t["name"], config_dtype(t["data_type"])) for t in config["input"]]
        self.outputs = [(t["name"], config_dtype(t["data_type"])) for t in config["output"]]
        # Tensors declared dims [1] with reshape [] (a [batch] tensor, or a scalar unbatched): the
        # model's shape has no [1] axis; the client's has.
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.reshaped = {t["name"] for t in config["input"] + config["output"] if "reshape" in t}
        # The runtime's knobs under the names Triton's onnxruntime and PyTorch backends read.
        options = options_from_config(config)
        self.runtime = ArtifactRuntime(
            os.path.join(version_dir, params["artifact"]),
            params["format"],
            [n for n, _ in self.inputs],
            [n for n, _ in self.outputs],
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

    def execute(
        self, buffers: list[bytearray], shapes: list[tuple[int, ...]]
    ) -> list[NDArray[Any]]:
        batch = {
            name: self._array(data, dtype).reshape(self._model_shape(name, shape))
            for (name, dtype), data, shape in zip(self.inputs, buffers, shapes, strict=True)
        }
        out = self.runtime(batch)
        # Triton sends the bytes as the config's type: cast where the runtime returned another.
        return [
            _words(np.ascontiguousarray(self._served(name, out[name]), dtype=dtype))
            for name, dtype in self.outputs
        ]

    @staticmethod
    def _array(data: bytearray, dtype: Any) -> NDArray[Any]:
        """An input's gathered bytes as numpy: a BYTES tensor arrives as Triton's elements, each a
        4-byte little-endian length and that many bytes (requests joined end to end), and becomes
        an object array of bytes (tritonclient.utils.deserialize_bytes_tensor)."""
        if dtype == np.dtype(object):
            return deserialize_bytes_tensor(bytes(data))  # type: ignore[no-any-return]
        return np.frombuffer(data, dtype)

    def _model_shape(self, name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        if name not in self.reshaped:
            return shape
        return tuple(shape[:1]) if self.batched else ()

    def _served(self, name: str, array: NDArray[Any]) -> NDArray[Any]:
        if name not in self.reshaped:
            return array
        return np.reshape(array, (-1, 1) if self.batched else (1,))
