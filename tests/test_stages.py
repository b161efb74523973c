"""Export, correctness and the Triton config on real exported files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deploysnake import checkpoint, correctness, frameworks, repository
from deploysnake.errors import UserError
from deploysnake.frameworks import ModelSource
from deploysnake.plugins import Recipe
from deploysnake.runtime import ArtifactRuntime

from .conftest import PARAMS

TOLERANCE = {"batch_size": 32, "batches": 3, "default": {"atol": 1e-4, "rtol": 1e-3}, "outputs": {}}
TRITON = {
    "max_batch_size": 128,
    "dynamic_batching": {
        "enabled": True,
        "preferred_batch_sizes": [16, 64, 256],
        "max_queue_delay_us": 250,
    },
    "instances": {"cpu": 3},
    "runtime_threads": 2,
}


def test_training_is_deterministic(recipe: Recipe, tmp_path: Path) -> None:
    # Same file name: torch.save records it inside the archive.
    a, b = tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt"
    checkpoint.make_checkpoint(recipe, PARAMS, None, a)
    checkpoint.make_checkpoint(recipe, PARAMS, None, b)
    assert a.read_bytes() == b.read_bytes()


ALL_CPU_FORMATS = [
    "torchscript_trace",
    "torchscript_script",
    "onnx",
    "onnx_optimized",
    "onnx_fp16",
    "onnx_int8",
]
FORMAT_TOLERANCE = {
    "onnx_fp16": {"atol": 1e-2, "rtol": 1e-2},
    "onnx_int8": {"atol": 2.0, "rtol": 0.5},
}


@pytest.mark.parametrize("fmt", ALL_CPU_FORMATS)
def test_export_describes_io_and_passes_correctness(
    fmt: str, recipe: Recipe, exported: dict[str, Path], tmp_path: Path
) -> None:
    io = json.loads(exported[f"{fmt}/io"].read_text())
    assert io["inputs"] == [
        {
            "name": "image",
            "dtype": "float32",
            "dims": [-1, 1, 8, 8],
            "batch_axis": 0,
            "datatype": "FP32",
        }
    ]
    assert io["outputs"] == [
        {
            "name": "logits",
            "dtype": "float32",
            "dims": [-1, 10],
            "batch_axis": 0,
            "datatype": "FP32",
        }
    ]
    tolerances = {**TOLERANCE, "formats": FORMAT_TOLERANCE}
    verdict = correctness.check(
        ModelSource(recipe, PARAMS, exported["checkpoint"]),
        "digits",
        fmt,
        exported[fmt],
        exported[f"{fmt}/io"],
        tolerances,
        tmp_path / "c.json",
    )
    assert verdict["passed"], verdict
    assert verdict["samples"] == 96
    assert (
        verdict["outputs"]["logits"]["atol"]
        == FORMAT_TOLERANCE.get(fmt, TOLERANCE["default"])["atol"]
    )
    assert verdict["outputs"]["logits"]["max_abs_err"] < (
        1e-4 if fmt not in FORMAT_TOLERANCE else FORMAT_TOLERANCE[fmt]["atol"]
    )
    # The task metric on the same batches: reduced precisions cost at most a few points here.
    accuracy = verdict["metrics"]["accuracy"]
    assert accuracy["source"] > 0.5 and abs(accuracy["artifact"] - accuracy["source"]) < 0.05
    if fmt in ("torchscript_trace", "torchscript_script"):
        assert verdict["outputs"]["logits"]["max_abs_err"] == 0.0
    # The batch dimension stays dynamic: a batch size never seen at export runs.
    out = ArtifactRuntime(exported[fmt], fmt, ["image"], ["logits"])(
        {"image": np.zeros((7, 1, 8, 8), np.float32)}
    )
    assert out["logits"].shape == (7, 10)


def test_too_tight_tolerance_fails_with_the_error(
    recipe: Recipe, exported: dict[str, Path], tmp_path: Path
) -> None:
    tight = {**TOLERANCE, "default": {"atol": 0.0, "rtol": 0.0}}
    verdict = correctness.check(
        ModelSource(recipe, PARAMS, exported["checkpoint"]),
        "digits",
        "onnx",
        exported["onnx"],
        exported["onnx/io"],
        tight,
        tmp_path / "c.json",
    )
    assert not verdict["passed"]
    assert verdict["outputs"]["logits"]["max_abs_err"] > 0
    assert "logits: max abs err" in verdict["reason"] and "(atol 0)" in verdict["reason"]
    assert json.loads((tmp_path / "c.json").read_text())["passed"] is False


def test_checkpoint_errors_name_the_file(
    recipe: Recipe, exported: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(UserError, match="checkpoint not found: .*missing.pt"):
        frameworks.load_state(recipe, PARAMS, tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(exported["checkpoint"].read_bytes()[:200])
    with pytest.raises(UserError, match="cannot be read.*truncated"):
        frameworks.load_state(recipe, PARAMS, truncated)
    other = tmp_path / "other.pt"
    torch.save(recipe.model.build_model({"channels": 4}).state_dict(), other)
    with pytest.raises(UserError, match="does not fit the recipe's model"):
        frameworks.load_state(recipe, PARAMS, other)


def test_variants_are_what_they_say(exported: dict[str, Path]) -> None:
    import onnx

    def op_types(fmt: str) -> set[str]:
        return {node.op_type for node in onnx.load(str(exported[fmt])).graph.node}

    def io_types(fmt: str) -> list[int]:
        graph = onnx.load(str(exported[fmt])).graph
        return [v.type.tensor_type.elem_type for v in [*graph.input, *graph.output]]

    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types("onnx_int8")
    fp16_inits = {
        init.data_type for init in onnx.load(str(exported["onnx_fp16"])).graph.initializer
    }
    assert onnx.TensorProto.FLOAT16 in fp16_inits
    assert (
        io_types("onnx_fp16")
        == io_types("onnx")
        == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT]
    )
    assert json.loads(exported["onnx_int8/io"].read_text())["format"] == "onnx_int8"


@pytest.mark.parametrize("flavour", ["inprocess", "python", "native"])
def test_config_pbtxt_parses_back_with_what_was_asked(
    flavour: str, exported: dict[str, Path], tmp_path: Path
) -> None:
    from tritonclient.grpc import model_config_pb2 as mc

    model_dir = repository.write_repository(
        "digits", exported["onnx"], exported["onnx/io"], TRITON, "cpu", flavour, tmp_path / "repo"
    )
    cfg = repository.read_config(model_dir / "config.pbtxt")
    assert cfg.name == "digits_onnx" == model_dir.name
    assert cfg.max_batch_size == 128
    assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [
        ("image", mc.TYPE_FP32, [1, 8, 8])
    ]
    assert [(o.name, o.data_type, list(o.dims)) for o in cfg.output] == [
        ("logits", mc.TYPE_FP32, [10])
    ]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [
        16,
        64,
    ]  # 256 > max_batch_size is dropped
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 250
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(3, mc.ModelInstanceGroup.KIND_CPU)]
    assert (model_dir / "1" / "model.onnx").read_bytes() == exported["onnx"].read_bytes()
    # the runtime threads under the onnxruntime backend's name, which the bundled runner reads too
    assert cfg.parameters["intra_op_thread_count"].string_value == "2"
    if flavour == "native":
        assert (cfg.platform, cfg.backend, cfg.default_model_filename) == (
            "onnxruntime_onnx",
            "",
            "model.onnx",
        )
    else:
        backend, runner = {
            "python": ("python", "model.py"),
            "inprocess": ("deploysnake", "deploysnake_model.py"),
        }[flavour]
        assert cfg.backend == backend
        assert sorted(p.name for p in (model_dir / "1").iterdir()) == sorted(
            ["model.onnx", runner, "runtime.py"]
        )


@pytest.mark.parametrize("fmt", ["onnx", "torchscript_trace"])
def test_native_baseline_runs_every_served_instance(
    fmt: str, exported: dict[str, Path], tmp_path: Path
) -> None:
    from deploysnake.contracts import ServedSettings, Target
    from deploysnake.measuring import native

    # Each instance loops until its own bound: 2 instances x 5 iterations, so both ran.
    rows = native.measure(
        Target("digits", fmt, "cpu"),
        ServedSettings(f"digits_{fmt}", "cpu", max_batch_size=1, instances=2, runtime_threads=1),
        exported[fmt],
        exported[f"{fmt}/io"],
        [1, 8],
        30.0,
        5,
        tmp_path / "n.csv",
    )
    assert [(r["batch"], r["instances"], r["runtime_threads"], r["iterations"]) for r in rows] == [
        (1, 2, 1, 10),
        (8, 2, 1, 10),
    ]
    assert all(
        r["throughput_infer_per_s"] > 0 and r["p99_latency_us"] >= r["p50_latency_us"] > 0
        for r in rows
    )
    assert (
        (tmp_path / "n.csv")
        .read_text()
        .splitlines()[0]
        .startswith("model,format,device,batch,throughput_infer_per_s")
    )


def test_legacy_onnx_exporter_is_selectable(
    recipe: Recipe, exported: dict[str, Path], tmp_path: Path
) -> None:
    from deploysnake import export

    artifact, io_json = tmp_path / "model.onnx", tmp_path / "io.json"
    export.export(
        ModelSource(recipe, PARAMS, exported["checkpoint"]),
        "onnx",
        artifact,
        io_json,
        {"onnx_exporter": "legacy", "onnx_opset": 17},
    )
    verdict = correctness.check(
        ModelSource(recipe, PARAMS, exported["checkpoint"]),
        "digits",
        "onnx",
        artifact,
        io_json,
        TOLERANCE,
        tmp_path / "c.json",
    )
    assert verdict["passed"]
    import onnx

    assert onnx.load(str(artifact)).opset_import[0].version == 17


@pytest.mark.parametrize(
    ("fmt", "platform", "filename"),
    [
        ("torchscript_script", "pytorch_libtorch", "model.pt"),
        ("onnx_fp16", "onnxruntime_onnx", "model.onnx"),
        ("onnx_int8", "onnxruntime_onnx", "model.onnx"),
    ],
)
def test_native_configs_per_format_and_gpu_settings(
    fmt: str, platform: str, filename: str, exported: dict[str, Path], tmp_path: Path
) -> None:
    from tritonclient.grpc import model_config_pb2 as mc

    triton = {**TRITON, "instances": {"cpu": 2, "a100": 1}}
    cpu = repository.read_config(
        repository.write_repository(
            "digits",
            exported[fmt],
            exported[f"{fmt}/io"],
            triton,
            "cpu",
            "native",
            tmp_path / "cpu",
        )
        / "config.pbtxt"
    )
    gpu = repository.read_config(
        repository.write_repository(
            "digits",
            exported[fmt],
            exported[f"{fmt}/io"],
            triton,
            "a100",
            "native",
            tmp_path / "gpu",
        )
        / "config.pbtxt"
    )
    assert (cpu.platform, cpu.default_model_filename) == (platform, filename)
    assert [(g.count, g.kind) for g in cpu.instance_group] == [(2, mc.ModelInstanceGroup.KIND_CPU)]
    assert [(g.count, g.kind) for g in gpu.instance_group] == [(1, mc.ModelInstanceGroup.KIND_GPU)]
    assert not cpu.HasField("optimization")
    accelerators = {
        a.name: dict(a.parameters)
        for a in gpu.optimization.execution_accelerators.gpu_execution_accelerator
    }
    if fmt == "onnx_fp16":
        assert accelerators["tensorrt"]["precision_mode"] == "FP16"
    elif fmt == "onnx_int8" or fmt.startswith("torchscript"):
        assert accelerators == {}


def test_tensorrt_plan_config_uses_cuda_graphs(exported: dict[str, Path], tmp_path: Path) -> None:
    io = json.loads(exported["onnx/io"].read_text())
    cfg = repository.build_config(
        "digits_tensorrt_fp16",
        {**io, "format": "tensorrt_fp16", "artifact": "model.plan"},
        TRITON,
        "h100",
        "native",
    )
    assert (cfg.platform, cfg.default_model_filename, cfg.optimization.cuda.graphs) == (
        "tensorrt_plan",
        "model.plan",
        True,
    )


def test_deploy_repository_and_archive_are_reproducible(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    import tarfile

    from deploysnake import deploy

    entries = [
        {"model": "digits", "format": f, "artifact": exported[f], "io": exported[f"{f}/io"]}
        for f in ("onnx", "torchscript_trace", "onnx_int8")
    ]
    names = deploy.write_deploy(
        entries, TRITON, "cpu", tmp_path / "a" / "cpu", tmp_path / "a" / "cpu.tar.gz"
    )
    deploy.write_deploy(
        entries, TRITON, "cpu", tmp_path / "b" / "cpu", tmp_path / "b" / "cpu.tar.gz"
    )
    assert names == ["digits_onnx", "digits_torchscript_trace", "digits_onnx_int8"]
    assert (tmp_path / "a" / "cpu.tar.gz").read_bytes() == (
        tmp_path / "b" / "cpu.tar.gz"
    ).read_bytes()
    with tarfile.open(tmp_path / "a" / "cpu.tar.gz") as tar:
        members = set(tar.getnames())
    assert {
        "cpu/digits_onnx/config.pbtxt",
        "cpu/digits_onnx/1/model.onnx",
        "cpu/digits_torchscript_trace/1/model.pt",
    } <= members
    cfg = repository.read_config(
        tmp_path / "a" / "cpu" / "digits_torchscript_trace" / "config.pbtxt"
    )
    assert cfg.platform == "pytorch_libtorch" and cfg.max_batch_size == 128


def test_gpu_runtime_says_what_is_missing(exported: dict[str, Path]) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the GPU path runs instead")
    with pytest.raises(RuntimeError, match="no CUDAExecutionProvider .install onnxruntime-gpu."):
        ArtifactRuntime(exported["onnx"], "onnx", ["image"], ["logits"], device="cuda")


def test_a_given_checkpoint_is_checked_and_used(
    recipe: Recipe, exported: dict[str, Path], tmp_path: Path
) -> None:
    given = tmp_path / "given.pt"
    torch.save(
        {"state_dict": torch.load(exported["checkpoint"], weights_only=True)}, given
    )  # a common wrapper
    checkpoint.make_checkpoint(recipe, PARAMS, str(given), tmp_path / "out" / "model.pt")
    saved = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    original = torch.load(exported["checkpoint"], weights_only=True)
    assert saved.keys() == original.keys() and all(
        torch.equal(saved[k], original[k]) for k in saved
    )
