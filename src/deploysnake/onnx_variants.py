"""ONNX Runtime precision variants of the exported ONNX model, and TensorRT plans where possible.

- onnx_optimized: ORT graph optimizations saved at the EXTENDED level (portable; ALL writes NCHWc
  ops that only the machine's own CPU kernels run);
- onnx_fp16: weights and compute in float16, inputs and outputs kept float32 (same IO as the source);
- onnx_int8: static QDQ quantization, calibrated on batches from the recipe's dataloader;
- tensorrt_fp32 / tensorrt_fp16: a TensorRT plan built from the ONNX file (GPU and `tensorrt` only).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from . import modelfiles
from .contracts import Status
from .errors import UserError
from .formats import ONNX_VARIANTS, TENSORRT, tensorrt_unavailable
from .plugins import Recipe

log = logging.getLogger(__name__)


def _large(source: Path) -> bool:
    """Whether the ONNX file with its side files reaches protobuf's limit: its variants are then
    written with external data (<variant>.data beside them), else as one self-contained file."""
    return modelfiles.size(modelfiles.onnx_files(source)) >= modelfiles.PROTOBUF_LIMIT


def _optimized(source: Path, target: Path) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    # Every initializer written anew: in <target>.data from 1 KiB above protobuf's limit, else
    # inline (without these keys ORT keeps a side file's tensors pointing at the source's file).
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name",
        modelfiles.side_file(target).name,
    )
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes",
        "1024" if _large(source) else str(2**62),
    )
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def _fp16(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # onnx.load reads the side files beside the source (checked inside its folder by onnx_files).
    modelfiles.onnx_files(source)
    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    modelfiles.save_onnx(model, target)


def _int8(
    source: Path,
    target: Path,
    recipe: Recipe,
    params: dict[str, Any],
    calibration_batches: int,
    batch_size: int,
) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches: list[dict[str, Any]] = []
    for batch in recipe.dataloader.batches("train", batch_size, params):
        if len(batches) >= calibration_batches:
            break
        batches.append(dict(batch["inputs"]))

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._batches, None)

    with tempfile.TemporaryDirectory(prefix="deploysnake-int8-") as tmp:
        # Shape inference first: the dynamo exporter's value_info otherwise trips the quantizer.
        prepared = Path(tmp) / "prepared.onnx"
        large = _large(source)
        quant_pre_process(
            str(source), str(prepared), save_as_external_data=large, all_tensors_to_one_file=True
        )
        quantize_static(
            str(prepared),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            use_external_data_format=large,  # writes <target>.data beside it
        )


def _tensorrt(
    source: Path, target: Path, fp16: bool, max_batch: int, io: dict[str, Any]
) -> None:  # pragma: no cover - GPU only
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):  # finds the side files beside the source
        raise RuntimeError("; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for tensor in io["inputs"]:
        dims = [d if d > 0 else 1 for d in tensor["dims"][1:]]
        profile.set_shape(
            tensor["name"], [1, *dims], [max(1, max_batch // 2), *dims], [max_batch, *dims]
        )
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT could not build the engine (see the log above)")
    target.write_bytes(bytes(plan))


def _location_free(fmt: str, target: Path) -> None:
    """The ONNX Runtime variants keep the source's node metadata (the quantizer adds its own): the
    export's cleaning again, so a variant names no path of the machine that built it either."""
    if fmt in ONNX_VARIANTS:
        from .export.to_onnx import location_free_onnx

        location_free_onnx(target)


def convert(
    fmt: str,
    source: str | Path,
    source_io: str | Path,
    target: str | Path,
    target_io: str | Path,
    recipe: Recipe,
    params: dict[str, Any],
    options: dict[str, Any],
) -> dict[str, Any]:
    """Write the variant and its io.json; a variant of a failed ONNX export, or a conversion that
    fails, is recorded as failed (the other formats go on), like a failed export."""
    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    io: dict[str, Any] = json.loads(Path(source_io).read_text())
    io.update(format=fmt, artifact=target.name)
    modelfiles.clear_side_file(target)  # an earlier run's, maybe hard-linked into a repository
    if io.get("status") == Status.FAILED:
        io["error"] = f"the ONNX export it is built from failed: {io['error']}"
        target.write_bytes(b"")
    else:
        started = time.perf_counter()
        try:
            if fmt == "onnx_optimized":
                _optimized(source, target)
            elif fmt == "onnx_fp16":
                _fp16(source, target)
            elif fmt == "onnx_int8":
                _int8(
                    source,
                    target,
                    recipe,
                    params,
                    int(options.get("calibration_batches", 8)),
                    int(options.get("calibration_batch_size", 64)),
                )
            elif fmt in TENSORRT:
                reason = tensorrt_unavailable()
                if reason:
                    raise UserError(f"{fmt} cannot be built here: {reason}")
                _tensorrt(
                    source,
                    target,
                    fmt == "tensorrt_fp16",
                    int(options.get("max_batch_size", 256)),
                    io,
                )
            else:
                raise UserError(
                    f"unknown ONNX variant {fmt!r}: choose from {ONNX_VARIANTS + TENSORRT}"
                )
            _location_free(fmt, target)
            io["status"] = Status.OK
            # The ONNX export's time and this conversion's (int8: with its calibration).
            io["build_seconds"] = round(
                float(io.get("build_seconds") or 0.0) + time.perf_counter() - started, 3
            )
        except UserError:
            raise
        except Exception as exc:
            from .export.stage import failure

            log.exception("%s conversion failed", fmt)
            target.write_bytes(b"")
            io.update(failure(exc))
    Path(target_io).write_text(json.dumps(io, indent=2) + "\n")
    log.info("%s: %s", fmt, io.get("status"))
    return io
