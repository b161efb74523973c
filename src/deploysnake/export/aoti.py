"""The AOTInductor format: the model exported with torch.export (dynamic batch and axes as for
ONNX), compiled ahead of time with the machine's C++ compiler into a .pt2 package (compile_aoti, in
a compile cache of its own), and run back to describe its outputs (run_aoti)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from numpy.typing import NDArray

from ..plugins import Recipe
from .torch_io import describe_outputs, dynamic_shapes, example_batch, exportable

log = logging.getLogger(__name__)


# Inductor's compile cache, under the working directory (ignored by git, kept between runs).
INDUCTOR_CACHE = Path(".cache") / "torchinductor"


def compile_aoti(program: Any, artifact: Path) -> None:
    """AOTInductor: compile a torch.export ExportedProgram ahead of time with this machine's C++
    compiler into one .pt2 package at artifact (torch._inductor.aoti_compile_and_package; CPU code
    where the program's weights are on CPU). Inductor's cache is shared between compiles: its
    precompiled torch headers are most of a small model's compile (docs/formats.md has the
    figures); entries are keyed by content and torch version. The cache is TORCHINDUCTOR_CACHE_DIR
    where set, else INDUCTOR_CACHE under the working directory (the project's folder, never
    torch's default /tmp/torchinductor_<user>, which other users' and runs' files share)."""
    import torch._inductor

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path.cwd() / INDUCTOR_CACHE))
    torch._inductor.aoti_compile_and_package(program, package_path=str(artifact))


def run_aoti(
    artifact: Path, names: list[str], inputs: dict[str, NDArray[Any]]
) -> list[NDArray[Any]]:
    """The outputs (in `names` order) of a .pt2 package run once on named numpy inputs given in the
    package's argument order, with the runtime that serves it (runtime.ArtifactRuntime)."""
    from ..runtime import ArtifactRuntime

    outputs = ArtifactRuntime(artifact, "aoti", list(inputs), names)(inputs)
    return [outputs[n] for n in names]


def export_aoti(
    model: torch.nn.Module,
    recipe: Recipe,
    artifact: Path,
    axes: dict[str, int | None] | None = None,
) -> dict[str, Any]:
    """torch.export.export with the ONNX export's dynamic batch and DYNAMIC_AXES (dynamic_shapes),
    then AOTInductor (compile_aoti) into artifact (model.pt2); the package is loaded back and run on
    the example to describe its outputs. Raises what torch.export or Inductor raise (export()
    records it as the format's failure)."""
    example = example_batch(recipe)
    try:
        with torch.no_grad():
            program = torch.export.export(
                exportable(model, recipe),
                example,
                dynamic_shapes=dynamic_shapes(recipe, axes or {}),
            )
    except Exception as exc:
        # A dynamic axis the model's code fixes (nn.LSTM's sequence in torch 2.13): torch.export
        # says so on a later line of its message; that line is the reason recorded.
        said = [line.strip(" -") for line in str(exc).splitlines() if "specialized it" in line]
        if not said:
            raise
        log.warning("torch.export failed:\n%s", exc)
        raise RuntimeError(
            f"torch.export cannot keep the dynamic axes: {said[0]} (the model's code fixes that "
            "axis, so no package of it takes other sizes; serve the model as onnx or torchscript)"
        ) from None
    compile_aoti(program, artifact)
    inputs = {n: t.numpy() for n, t in zip(recipe.input_names, example, strict=True)}
    outputs = run_aoti(artifact, recipe.output_names, inputs)
    return {
        "inputs": describe_outputs(recipe.input_names, list(inputs.values()), recipe.dynamic_axes),
        "outputs": describe_outputs(recipe.output_names, outputs, recipe.dynamic_axes),
    }
