"""The deployment formats, one registry entry each: the artifact's file name, the Triton platform
and backend that serve it natively, the runtime that reads it, the frameworks whose models can be
deployed in it; and which ones this machine can build. Light on imports: the Snakefile reads it at
every start. Tensor data types are not per format: dtypes.py maps them (tritonclient.utils' and
onnx.helper's own maps).

A new format is one `Format` entry in FORMATS (and a `Family` entry when a new runtime reads it);
the tables other modules read (ARTIFACTS, FRAMEWORK_FORMATS, the Triton platforms of a source) are
derived from these.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass

# The frameworks a model comes from: a recipe's framework, or an exported source's kind (sources.py).
FRAMEWORKS = ("torch", "keras", "onnx", "torchscript", "savedmodel", "exported_program")
# The frameworks of a recipe (trained here); the others are exported sources.
RECIPE_FRAMEWORKS = ("torch", "keras")


@dataclass(frozen=True)
class Family:
    """The files one runtime reads, whatever the variant: the artifact's file name inside
    results/export/<model>/<format>/ (Triton's default name for the platform), Triton's native
    platform and backend for it (None: no Triton backend loads it natively, see
    repository.NO_NATIVE_BACKEND), the runtime's name for messages, and whether deploysnake takes
    such a file (or a Triton model directory holding one) as an exported source."""

    name: str
    artifact: str
    platform: str | None
    backend: str | None
    runtime: str
    source: bool


FAMILIES = {
    family.name: family
    for family in (
        Family(
            "torchscript", "model.pt", "pytorch_libtorch", "pytorch", "torch (TorchScript)", True
        ),
        Family(
            "savedmodel",
            "model.savedmodel",
            "tensorflow_savedmodel",
            "tensorflow",
            "tensorflow",
            True,
        ),
        Family("onnx", "model.onnx", "onnxruntime_onnx", "onnxruntime", "onnxruntime", True),
        # torch.export + AOTInductor package (torch._inductor.aoti_load_package)
        Family("aoti", "model.pt2", None, None, "torch (AOTInductor)", False),
        Family("tensorrt", "model.plan", "tensorrt_plan", "tensorrt", "TensorRT", False),
    )
}


@dataclass(frozen=True)
class Format:
    """One deployment format: its name (config `formats`, the {format} wildcard), its family (the
    runtime that reads it), how it is made ("export": from a recipe's model, "given": an exported
    source's own file, "onnx_variant": rewritten from the ONNX export, "tensorrt": built from it)
    and the frameworks whose models can be deployed in it (`formats: auto` takes those the machine
    can build, less those with a `not_auto` reason: named in `formats` they are built)."""

    name: str
    family: Family
    made_by: str
    frameworks: tuple[str, ...]
    not_auto: str | None = None

    @property
    def artifact(self) -> str:
        """The artifact's file name in results/export/<model>/<format>/ ("model.onnx" ...)."""
        return self.family.artifact

    @property
    def platform(self) -> str | None:
        """Triton's native platform serving it ("onnxruntime_onnx" ...)."""
        return self.family.platform

    @property
    def runtime(self) -> str:
        """The runtime that reads it, for messages ("onnxruntime" ...)."""
        return self.family.runtime


def _entry(
    name: str, family: str, made_by: str, frameworks: tuple[str, ...], not_auto: str | None = None
) -> tuple[str, Format]:
    return name, Format(name, FAMILIES[family], made_by, frameworks, not_auto)


FORMATS = dict(
    (
        _entry("torchscript_trace", "torchscript", "export", ("torch",)),
        _entry("torchscript_script", "torchscript", "export", ("torch",)),
        _entry(
            "torchscript", "torchscript", "given", ("torchscript",)
        ),  # models.<name>.torchscript
        _entry("savedmodel", "savedmodel", "export", ("keras", "savedmodel")),
        _entry("onnx", "onnx", "export", FRAMEWORKS),
        # AOTInductor compiles C++ for each model, measured at about 150 s for the digits CNN on
        # the 2-core project machine under load, against seconds for every other format.
        _entry(
            "aoti",
            "aoti",
            "export",
            ("torch", "exported_program"),
            "not in formats: auto (AOTInductor's C++ compile takes minutes on a small CPU); "
            "name it in formats to build it",
        ),
        _entry("onnx_optimized", "onnx", "onnx_variant", FRAMEWORKS),
        _entry("onnx_fp16", "onnx", "onnx_variant", FRAMEWORKS),
        _entry("onnx_int8", "onnx", "onnx_variant", FRAMEWORKS),
        _entry("tensorrt_fp32", "tensorrt", "tensorrt", FRAMEWORKS),
        _entry("tensorrt_fp16", "tensorrt", "tensorrt", FRAMEWORKS),
    )
)

# Derived views of FORMATS, for the Snakefile's wildcard constraints and the checks of the config.
# Format name -> file name of the artifact inside results/export/<model>/<format>/.
ARTIFACTS = {name: fmt.artifact for name, fmt in FORMATS.items()}
ONNX_VARIANTS = tuple(name for name, fmt in FORMATS.items() if fmt.made_by == "onnx_variant")
TENSORRT = tuple(name for name, fmt in FORMATS.items() if fmt.made_by == "tensorrt")
ONNX_FAMILY = ["onnx", *ONNX_VARIANTS, *TENSORRT]


def _framework_formats(framework: str) -> list[str]:
    """The formats a framework's models can be deployed in: a recipe's in FORMATS' order; an
    exported source's own format first (a torch.export program's: aoti), then ONNX and its variants."""
    names = [name for name, fmt in FORMATS.items() if framework in fmt.frameworks]
    if framework in RECIPE_FRAMEWORKS:
        return names
    return [n for n in names if n not in ONNX_FAMILY] + [n for n in names if n in ONNX_FAMILY]


# Formats each framework's models can be deployed in (`formats: auto` takes those the machine can
# build, less NOT_AUTO).
FRAMEWORK_FORMATS = {framework: _framework_formats(framework) for framework in FRAMEWORKS}
# Formats that `formats: auto` leaves out -> why (named in `formats` they are built).
NOT_AUTO = {name: fmt.not_auto for name, fmt in FORMATS.items() if fmt.not_auto}
# Triton platforms and backends of a model directory -> the family of its file, for the families
# deploysnake takes as exported sources.
SOURCE_PLATFORMS = {
    key: family.name
    for family in FAMILIES.values()
    if family.source
    for key in (family.platform, family.backend)
    if key is not None
}


# x86 CPU flags of float16 arithmetic (not F16C's conversions alone), as /proc/cpuinfo names them.
FP16_FLAGS = ("avx512_fp16", "amx_fp16")
# `formats: auto` with CPU devices only, on a CPU without FP16_FLAGS, leaves out onnx_fp16: why.
CPU_FP16_NOT_AUTO = (
    "not in formats: auto on this CPU (no float16 arithmetic: ONNX Runtime's CPU provider turns the "
    "variant's float16 weights back into float32 when it loads it and computes as onnx does, so it "
    "is onnx with rounded weights, served at onnx's throughput); name it in formats to build it"
)


def cpu_has_float16_arithmetic(cpuinfo: str | None = None) -> bool:
    """Whether this machine's CPU computes in float16: an ARM CPU (ARMv8.2's half-precision
    arithmetic, which ONNX Runtime's MLAS kernels use on arm64), or an x86 CPU whose /proc/cpuinfo
    flags (`cpuinfo`: that text, for tests) hold one of FP16_FLAGS. False where the flags cannot be
    read on x86."""
    import platform

    if cpuinfo is None:
        if platform.machine().lower() in ("arm64", "aarch64"):
            return True
        try:
            with open("/proc/cpuinfo") as handle:
                cpuinfo = handle.read()
        except OSError:
            return False
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return bool(flags & {*FP16_FLAGS, "asimdhp"})


def tensorrt_unavailable() -> str | None:
    """Why TensorRT plans cannot be built here, or None when they can."""
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt Python package is not installed (TensorRT needs an NVIDIA GPU machine)"
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU on this machine (no nvidia-smi)"
    return None
