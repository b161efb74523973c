"""Data types across numpy (io.json's `dtype`), Triton (the wire datatype and the config's TYPE_*)
and ONNX, from the libraries' own maps (tritonclient.utils, onnx.helper) rather than tables of ours.

io.json spells a tensor's dtype as numpy does: "float32", "uint16", "bool", "bfloat16" (numpy knows it
once ml_dtypes is imported, which this module does), and "object" for a string tensor: an array of
str/bytes, which Triton carries as BYTES (config TYPE_STRING) and ONNX as STRING.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy)
import numpy as np
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import np_to_triton_dtype, triton_to_np_dtype

from .errors import UserError

STRING = "object"  # io.json's dtype of a string (BYTES) tensor


def numpy_dtype(dtype: str) -> np.dtype[Any]:
    """The numpy dtype of an io.json dtype name ("bfloat16" included)."""
    return np.dtype(dtype)


def is_string(dtype: str | np.dtype[Any]) -> bool:
    """Whether a dtype is a string tensor's (numpy object, str or bytes arrays): Triton's BYTES."""
    return np.dtype(dtype).kind in "OSU"


def wire_datatype(dtype: str | np.dtype[Any]) -> str | None:
    """Triton's wire datatype ("FP32", "BYTES", "BF16" ...) of a numpy dtype, from
    tritonclient.utils.np_to_triton_dtype; None where Triton has none (complex numbers, datetimes)."""
    return np_to_triton_dtype(np.dtype(dtype))  # type: ignore[no-any-return]


def config_type(dtype: str, what: str = "tensor") -> int:
    """The model config's data_type (model_config_pb2.TYPE_*) of an io.json dtype: the wire
    datatype prefixed with TYPE_, BYTES as TYPE_STRING (Triton's model_config.proto names it so).
    Raises UserError naming `what` where Triton has no such type."""
    wire = wire_datatype(dtype)
    if wire is None:
        raise UserError(
            f"{what} has dtype {dtype}, which Triton cannot carry (it has booleans, integers of "
            "every width, float16/bfloat16/32/64 and strings): convert it in the model"
        )
    return int(mc.DataType.Value("TYPE_STRING" if wire == "BYTES" else f"TYPE_{wire}"))


def from_config(type_name: str) -> str | None:
    """io.json's dtype of a config data_type name ("TYPE_FP32" -> "float32", "TYPE_STRING" ->
    "object"); None for TYPE_INVALID or an unknown name."""
    wire = "BYTES" if type_name == "TYPE_STRING" else type_name.removeprefix("TYPE_")
    if type_name == "TYPE_INVALID" or type_name not in mc.DataType.keys():  # noqa: SIM118 (an enum wrapper)
        return None
    found = triton_to_np_dtype(wire)
    return None if found is None else str(np.dtype(found))


def onnx_type(dtype: str) -> int:
    """onnx.TensorProto's data type of an io.json dtype (onnx.helper's map; object: STRING)."""
    from onnx import helper

    return int(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


def with_datatypes(io: dict[str, Any]) -> dict[str, Any]:
    """io.json's tensors each with "datatype", Triton's wire name of its dtype ("BYTES" for a
    string tensor), beside the numpy "dtype" every stage reads."""
    for kind in ("inputs", "outputs"):
        for tensor in io.get(kind, []):
            tensor["datatype"] = wire_datatype(tensor["dtype"])
    return io
