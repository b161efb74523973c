"""The deployment formats: their artifact names, which frameworks they apply to, and which ones this
machine can build. Light on imports: the Snakefile reads it at every start."""

from __future__ import annotations

import importlib.util
import shutil

# Format name -> file name of the artifact inside results/export/<model>/<format>/ (Triton's default names).
ARTIFACTS = {
    "torchscript_trace": "model.pt",
    "torchscript_script": "model.pt",
    "torchscript": "model.pt",  # a given TorchScript file (models.<name>.torchscript)
    "savedmodel": "model.savedmodel",
    "onnx": "model.onnx",
    "aoti": "model.pt2",  # torch.export + AOTInductor package (torch._inductor.aoti_load_package)
    "onnx_optimized": "model.onnx",
    "onnx_fp16": "model.onnx",
    "onnx_int8": "model.onnx",
    "tensorrt_fp32": "model.plan",
    "tensorrt_fp16": "model.plan",
}
ONNX_VARIANTS = ("onnx_optimized", "onnx_fp16", "onnx_int8")
TENSORRT = ("tensorrt_fp32", "tensorrt_fp16")
ONNX_FAMILY = ["onnx", *ONNX_VARIANTS, *TENSORRT]
# Formats each framework's models can be deployed in (`formats: auto` takes those the machine can
# build, less NOT_AUTO). An exported source's framework is its kind (sources.py): its own format,
# then ONNX and its variants.
FRAMEWORK_FORMATS = {
    "torch": [f for f in ARTIFACTS if f not in ("savedmodel", "torchscript")],
    "keras": [f for f in ARTIFACTS if not f.startswith("torchscript") and f != "aoti"],
    "onnx": ONNX_FAMILY,
    "torchscript": ["torchscript", *ONNX_FAMILY],
    "savedmodel": ["savedmodel", *ONNX_FAMILY],
    # A torch.export program (models.<name>.exported_program): the reference, served as none itself.
    "exported_program": ["aoti", *ONNX_FAMILY],
}


# Formats that `formats: auto` leaves out (named in `formats` they are built): AOTInductor compiles
# C++ for each model, measured at about 150 s for the digits CNN on the 2-core project machine
# under load, against seconds for every other format.
NOT_AUTO = {
    "aoti": "not in formats: auto (AOTInductor's C++ compile takes minutes on a small CPU); "
    "name it in formats to build it",
}


def tensorrt_unavailable() -> str | None:
    """Why TensorRT plans cannot be built here, or None when they can."""
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt Python package is not installed (TensorRT needs an NVIDIA GPU machine)"
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU on this machine (no nvidia-smi)"
    return None
