"""Config validation: every bad input is rejected before any job runs, naming the key and what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from deploysnake.configuration import validate
from deploysnake.errors import UserError
from deploysnake.formats import cpu_has_float16_arithmetic

from .conftest import ROOT, snakemake

DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def changed(**edits: object) -> dict:
    config = copy.deepcopy(DEFAULT)
    for dotted, value in edits.items():
        *parents, last = dotted.split("__")
        node = config
        for key in parents:
            node = node[key]
        node[last] = value
    return config


def test_default_config_is_valid_and_defaults_are_filled() -> None:
    minimal = {
        "models": {"m1": {"recipe": "recipes/digits"}},
        "formats": ["onnx"],
        "devices": ["cpu"],
    }
    config = validate(minimal)
    assert config["triton"]["host"] == "127.0.0.1"
    assert config["perf"]["offline"]["shared_memory"] == "system"
    assert config["models"]["m1"]["checkpoint"] == ""
    validate(DEFAULT)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (dict(DEFAULT, colour="red"), "unknown key(s) 'colour'"),
        (
            changed(perf__offline__batch_szes=[1]),
            "config.perf.offline: unknown key(s) 'batch_szes'; allowed keys: batch_sizes, concurrency, shared_memory",
        ),
        (
            changed(triton__max_batch_size="big"),
            "config.triton.max_batch_size: 'big' should be of type integer",
        ),
        (changed(formats=[]), "config.formats"),
        (
            changed(formats=["tflite"]),
            "config.formats[0]: 'tflite' is not allowed; allowed values: torchscript_trace, "
            "torchscript_script, torchscript, savedmodel, onnx,",
        ),
        (changed(devices=["tpu"]), "config.devices[0]: 'tpu' is not allowed; allowed values: cpu"),
        (
            changed(perf__offline__batch_sizes=[1, 512]),
            "config.perf.offline.batch_sizes: [512] above triton.max_batch_size (256)",
        ),
        (changed(models={"a/b": {"recipe": "recipes/digits"}}), "name 'a/b' is not allowed"),
        (
            changed(models={"x; rm -rf": {"recipe": "recipes/digits"}}),
            "name 'x; rm -rf' is not allowed",
        ),
        (
            changed(models__digits__checkpoint="/nowhere/model.pt"),
            "config.models.digits.checkpoint: file /nowhere/model.pt does not exist",
        ),
        (
            changed(models__digits__recipe="/nowhere"),
            "config.models.digits.recipe: folder /nowhere does not exist",
        ),
    ],
)
def test_bad_config_names_the_key(config: dict, expected: str) -> None:
    with pytest.raises(UserError) as error:
        validate(config)
    assert expected in str(error.value)


def test_gpu_model_mapping_names_gpu_kinds() -> None:
    # a site profile maps every kind its cluster has, whatever devices this run measures on
    assert (
        validate(changed(gpu_models={"a100": "nvidia_a100_80gb", "t4": "tesla_t4"}))["gpu_models"][
            "t4"
        ]
        == "tesla_t4"
    )
    with pytest.raises(UserError, match=r"config.gpu_models"):
        validate(changed(gpu_models={"tpu": "v5e"}))
    with pytest.raises(UserError, match=r"config.gpu_models.a100"):
        validate(changed(gpu_models={"a100": "a100; rm -rf /"}))


def test_snakemake_rejects_bad_config_before_any_job(tmp_path: Path) -> None:
    bad = changed(perf__online__concurency=[1, 2])
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    done = snakemake(
        "results/report.html",
        "--cores",
        "1",
        "--configfile",
        "bad.yaml",
        cwd=tmp_path,
        check=False,
        timeout=120,
    )
    assert done.returncode != 0
    assert "config.perf.online: unknown key(s) 'concurency'" in done.stdout + done.stderr
    assert not (tmp_path / "results").exists()


def test_formats_auto_skips_what_this_machine_cannot_build() -> None:
    from deploysnake.configuration import plan_formats
    from deploysnake.formats import CPU_FP16_NOT_AUTO, NOT_AUTO, tensorrt_unavailable

    planned, skipped = plan_formats(validate(changed(formats="auto")))
    reason = tensorrt_unavailable()
    if reason is None:
        pytest.skip("this machine can build TensorRT plans")
    fp16 = cpu_has_float16_arithmetic()
    assert planned["digits"] == [
        "torchscript_trace",
        "torchscript_script",
        "onnx",
        "onnx_optimized",
        *(["onnx_fp16"] if fp16 else []),
        "onnx_int8",
    ]
    assert [(s["format"], s["reason"]) for s in skipped] == [
        ("aoti", NOT_AUTO["aoti"]),  # built only where named: minutes of C++ compile
        *([] if fp16 else [("onnx_fp16", CPU_FP16_NOT_AUTO)]),  # onnx's compute, rounded weights
        ("tensorrt_fp32", f"skipped: {reason}"),
        ("tensorrt_fp16", f"skipped: {reason}"),
    ]
    # named, it is built on any CPU
    assert (
        "onnx_fp16" in plan_formats(validate(changed(formats=["onnx", "onnx_fp16"])))[0]["digits"]
    )
    with pytest.raises(
        UserError,
        match=r"config.formats: \['tensorrt_fp16'\] cannot be built on this machine: .*formats: auto",
    ):
        validate(changed(formats=["onnx", "tensorrt_fp16"]))


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        ("flags\t\t: fpu sse2 avx2 f16c avx512f avx512_bf16 avx512_vnni\n", False),  # this AMD EPYC
        ("flags\t\t: fpu avx512f avx512_fp16 amx_bf16\n", True),  # Sapphire Rapids
        ("Features\t: fp asimd evtstrm asimdhp cpuid\n", True),  # ARMv8.2
        ("", False),
    ],
)
def test_float16_arithmetic_is_read_from_the_cpu_flags(cpuinfo: str, expected: bool) -> None:
    assert cpu_has_float16_arithmetic(cpuinfo) is expected
