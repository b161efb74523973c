"""Triton config stage: a model repository per format and device, config.pbtxt written through
Triton's protobuf schema (model_config_pb2 + text_format) so every field is one Triton knows.

Three flavours share one config builder, so batching, instances and IO stay identical:
- "native": the artifact under Triton's native backend (onnxruntime_onnx, pytorch_libtorch);
- "inprocess": deploysnake's backend (inprocess.py) running the artifact with the runtime that reads
  it inside the server process, for servers without native backends (the tritonserver shipped in the
  nvidia-pytriton wheel);
- "python": the same runner under Triton's python backend (a stub process per instance), where the
  in-process backend is not built.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from . import dtypes, inprocess, modelfiles
from . import runtime as runtime_module
from .contracts import RUNTIME_KNOBS, ServedSettings
from .devices import instance_count
from .formats import FORMATS
from .shapes import check_batchable, served_dims

log = logging.getLogger(__name__)

# Formats no Triton 2.51 backend loads natively -> why: deployed with the bundled runner (python backend).
NO_NATIVE_BACKEND = {
    "aoti": "no Triton 2.51 backend loads an AOTInductor .pt2 package (the PyTorch backend takes "
    "TorchScript): deployed with deploysnake's runner under the python backend",
}


def native_platform(fmt: str) -> str:
    """Triton's native platform of a format ("onnx_fp16" -> "onnxruntime_onnx"), from formats.FORMATS.
    Raises KeyError for a format no Triton backend loads natively (NO_NATIVE_BACKEND)."""
    platform = FORMATS[fmt].platform
    if platform is None:
        raise KeyError(f"{fmt}: {NO_NATIVE_BACKEND.get(fmt, 'no native Triton platform')}")
    return platform


def _gpu_settings(cfg: mc.ModelConfig, fmt: str) -> None:
    """The accelerator settings the guides use on GPU: CUDA graphs for TensorRT plans, the TensorRT
    execution accelerator (fp16 for the fp16 variant) for ONNX Runtime."""
    family = FORMATS[fmt].family.name
    if family == "tensorrt":
        cfg.optimization.cuda.graphs = True
    elif family == "onnx" and fmt != "onnx_int8":
        accelerator = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add()
        accelerator.name = "tensorrt"
        accelerator.parameters["precision_mode"] = "FP16" if fmt == "onnx_fp16" else "FP32"
        accelerator.parameters["max_workspace_size_bytes"] = str(1 << 30)


# The runner each flavour copies into the version folder, beside runtime.py.
RUNNERS = {
    "python": Path(__file__).with_name("backend") / "python_backend_model.py",
    "inprocess": inprocess.RUNNER,
}
BACKENDS = {"python": "python", "inprocess": inprocess.BACKEND}


def runtime_parameters(fmt: str, triton: dict[str, Any]) -> dict[str, str]:
    """The runtime's knobs (triton runtime_threads, inter_op_threads, execution_mode) as the config
    parameters the format's Triton backend reads: the onnxruntime backend's intra_op_thread_count,
    inter_op_thread_count and execution_mode ("1": parallel); the PyTorch backend's
    INTRA_OP_THREAD_COUNT and INTER_OP_THREAD_COUNT (torch formats, AOTInductor's bundled runner
    included); deploysnake's own `threads` for the others. A count of 0 (the runtime's default) and
    sequential execution are left out, as the backends' defaults. Sources: the onnxruntime_backend
    and pytorch_backend READMEs (Triton 2.51). The bundled runner reads the same names
    (runtime.options_from_config)."""
    family = FORMATS[fmt].family.name
    threads = int(triton.get("runtime_threads", 0))
    inter = int(triton.get("inter_op_threads", 0))
    if family == "onnx":
        names = ("intra_op_thread_count", "inter_op_thread_count")
    elif family in ("torchscript", "aoti"):
        names = ("INTRA_OP_THREAD_COUNT", "INTER_OP_THREAD_COUNT")
    else:
        return {"threads": str(threads)}
    params = {name: str(n) for name, n in zip(names, (threads, inter), strict=True) if n > 0}
    if family == "onnx" and triton.get("execution_mode", "sequential") == "parallel":
        params["execution_mode"] = "1"
    return params


def triton_model_name(model: str, fmt: str) -> str:
    return f"{model}_{fmt}"


def served_settings(
    model: str, fmt: str, triton: dict[str, Any], device: str, trial: str | None = None
) -> ServedSettings:
    """The settings the repository of model x fmt on device is written with (triton: the triton
    section, or a tuned configuration's, trial its id), as every later job reads them
    (contracts.ServedSettings)."""
    return ServedSettings(
        model_name=triton_model_name(model, fmt),
        device=device,
        max_batch_size=int(triton["max_batch_size"]),
        instances=instance_count(triton, device),
        runtime_threads=int(triton.get("runtime_threads", 0)),
        runtime_options={k: triton[k] for k in RUNTIME_KNOBS if k in triton},
        trial=trial,
    )


def build_config(
    name: str, io: dict[str, Any], triton: dict[str, Any], device: str, flavour: str
) -> mc.ModelConfig:
    """The model's config: the runtime's knobs as the format's backend reads them
    (runtime_parameters; ONNX Runtime's graph optimization level as optimization.graph.level);
    max_batch_size > 0 declares each tensor's dims after its batch axis (a
    [batch] tensor as dims [1] with reshape []), with the dynamic batcher where enabled;
    max_batch_size 0 declares full shapes and no dynamic batcher. Strings (io.json dtype object)
    are TYPE_STRING. Raises UserError for a dtype Triton cannot express, or a tensor a batched
    model cannot serve (no batch axis, or not axis 0)."""
    cfg = mc.ModelConfig(name=name, max_batch_size=int(triton["max_batch_size"]))
    fmt = io["format"]
    if flavour == "native":
        cfg.platform = native_platform(fmt)
        cfg.default_model_filename = io["artifact"]
        if device != "cpu":
            _gpu_settings(cfg, fmt)
    else:
        cfg.backend = BACKENDS[flavour]
        for key, value in {"artifact": io["artifact"], "format": fmt}.items():
            cfg.parameters[key].string_value = value
    # The runtime's knobs where the backend takes them (the bundled runner reads the same names).
    for key, value in runtime_parameters(fmt, triton).items():
        if flavour != "native" or key != "threads":
            cfg.parameters[key].string_value = value
    level = runtime_module.GRAPH_LEVELS[triton.get("graph_optimization_level", "all")]
    if level and FORMATS[fmt].family.name == "onnx":
        cfg.optimization.graph.level = level
    # Batched, every tensor must carry the batch on axis 0 (export refuses others; a tuned
    # configuration is checked again here). Unbatched, dims are the full shape.
    check_batchable(io, cfg.max_batch_size)
    for kind, tensors in (("input", io["inputs"]), ("output", io["outputs"])):
        for tensor in tensors:
            entry = getattr(cfg, kind).add()
            entry.name = tensor["name"]
            entry.data_type = dtypes.config_type(tensor["dtype"], f"{kind} {tensor['name']!r}")
            dims, reshape = served_dims(tensor, cfg.max_batch_size)
            entry.dims.extend(dims)
            if reshape is not None:  # [batch] (or a scalar, unbatched): dims [1], reshape []
                entry.reshape.SetInParent()
                entry.reshape.shape.extend(reshape)
    batching = triton.get("dynamic_batching", {})
    if batching.get("enabled", True) and cfg.max_batch_size > 0:
        preferred = [
            b for b in batching.get("preferred_batch_sizes", []) if b <= cfg.max_batch_size
        ]
        cfg.dynamic_batching.preferred_batch_size.extend(preferred)
        cfg.dynamic_batching.max_queue_delay_microseconds = int(
            batching.get("max_queue_delay_us", 0)
        )
    group = cfg.instance_group.add()
    group.count = instance_count(triton, device)
    group.kind = (
        mc.ModelInstanceGroup.KIND_CPU if device == "cpu" else mc.ModelInstanceGroup.KIND_GPU
    )
    warmup = triton.get("warmup") or {}
    if warmup.get("enabled", False):
        cfg.model_warmup.append(warmup_sample(io, cfg.max_batch_size, warmup))
    return cfg


# Size given to an input axis that varies besides the batch (a dynamic sequence) in a warmup sample.
WARMUP_DYNAMIC_SIZE = 1


def warmup_sample(
    io: dict[str, Any], max_batch_size: int, warmup: dict[str, Any]
) -> mc.ModelWarmup:
    """Triton's ModelWarmup (model_config.proto) for `io`'s inputs: every input at its served dims
    (shapes.served_dims; an axis that varies besides the batch, -1 in io.json, gets
    WARMUP_DYNAMIC_SIZE), with zero_data or random_data as `warmup["data"]` says (a string input always
    zero_data: Triton makes no random strings), `warmup["batch_size"]` samples per request (1 for an
    unbatched model, max_batch_size 0, and never above max_batch_size) sent `warmup["count"]` times.
    Triton runs it on every instance before the model is ready, so the first real request finds the
    runtime's lazy initialisation done (model configuration guide, "Model Warmup")."""
    sample = mc.ModelWarmup(
        name="deploysnake_warmup",
        batch_size=1
        if max_batch_size <= 0
        else max(1, min(int(warmup.get("batch_size", 1)), max_batch_size)),
        count=max(1, int(warmup.get("count", 1))),
    )
    for tensor in io["inputs"]:
        entry = sample.inputs[tensor["name"]]
        entry.data_type = dtypes.config_type(tensor["dtype"], f"input {tensor['name']!r}")
        dims, _ = served_dims(tensor, max_batch_size)
        entry.dims.extend(d if d > 0 else WARMUP_DYNAMIC_SIZE for d in dims)
        if warmup.get("data", "zero") == "random" and not dtypes.is_string(tensor["dtype"]):
            entry.random_data = True
        else:
            entry.zero_data = True
    return sample


def without_warmup(cfg: mc.ModelConfig) -> mc.ModelConfig:
    """A copy of `cfg` with no model_warmup (what the cold-start measurement loads first)."""
    bare = mc.ModelConfig()
    bare.CopyFrom(cfg)
    del bare.model_warmup[:]
    return bare


def write_repository(
    model: str,
    artifact: str | Path,
    io_json: str | Path,
    triton: dict[str, Any],
    device: str,
    flavour: str,
    out_dir: str | Path,
    link: bool = True,
) -> Path:
    """Write <out_dir>/<model>_<format>/{config.pbtxt, 1/<artifact>[, its side files][,
    1/<runner>.py, 1/runtime.py]}; with link, the artifact's files are hard links of results/export's
    where the file system allows (else, and without link, copies). The in-process flavour becomes
    the python flavour for a model with a string (BYTES) output."""
    io = json.loads(Path(io_json).read_text())
    name = triton_model_name(model, io["format"])
    if flavour == "native" and io["format"] in NO_NATIVE_BACKEND:
        # Triton 2.51's PyTorch backend loads TorchScript only (its experimental "PyTorch 2.0"
        # mode takes a model.py and weights, not an AOTInductor package): the package ships with
        # the bundled runner under the python backend, which the NGC images include.
        log.info("%s: %s", name, NO_NATIVE_BACKEND[io["format"]])
        flavour = "python"
    if flavour == "inprocess" and any(dtypes.is_string(t["dtype"]) for t in io["outputs"]):
        # The in-process backend answers fixed-size rows; a string (BYTES) output's rows vary in
        # size, so that model runs under the python backend, which the same server loads.
        log.info("%s has a string output: served with the python backend's runner", name)
        flavour = "python"
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    version = out_dir / name / "1"
    version.mkdir(parents=True)
    cfg = build_config(name, io, triton, device, flavour)
    (out_dir / name / "config.pbtxt").write_text(text_format.MessageToString(cfg))
    # The artifact with every file it needs (an ONNX file's side files, a SavedModel's folder),
    # hard-linked from results/export where link allows (nothing writes a served copy in place).
    modelfiles.copy_artifact(artifact, io["format"], version / io["artifact"], link=link)
    if flavour in RUNNERS:
        # Triton's python backend loads model.py; deploysnake's backend loads its own module name.
        shutil.copyfile(
            RUNNERS[flavour],
            version / ("model.py" if flavour == "python" else RUNNERS[flavour].name),
        )
        shutil.copyfile(runtime_module.__file__, version / "runtime.py")
    return out_dir / name


def read_config(path: str | Path) -> mc.ModelConfig:
    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())
