"""TorchScript formats: trace and script of the recipe's model, a TorchScript file without its
source paths (location_free_torchscript: the bytes do not depend on the checkout's folder) and a
module whose outputs are a flat tuple (flat_torchscript: what the ONNX exporter and Triton take)."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from .. import sources
from ..plugins import Recipe
from .torch_io import as_tuple, describe_outputs, example_batch, exportable

log = logging.getLogger(__name__)


def export_torchscript_trace(
    model: torch.nn.Module, recipe: Recipe, artifact: Path
) -> dict[str, Any]:
    example = example_batch(recipe)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter(
            "ignore", DeprecationWarning
        )  # torch.jit is deprecated in 2.13 but Triton's libtorch backend needs it
        traced = torch.jit.trace(exportable(model, recipe), example)
        torch.jit.save(traced, str(artifact))
        location_free_torchscript(artifact)
        loaded = torch.jit.load(str(artifact))
        outputs = as_tuple(loaded(*example), recipe.output_names)
    return {
        "inputs": describe_outputs(
            recipe.input_names, [t.numpy() for t in example], recipe.dynamic_axes
        ),
        "outputs": describe_outputs(
            recipe.output_names, [t.numpy() for t in outputs], recipe.dynamic_axes
        ),
    }


def export_torchscript_script(
    model: torch.nn.Module, recipe: Recipe, artifact: Path
) -> dict[str, Any]:
    example = example_batch(recipe)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), str(artifact))
        location_free_torchscript(artifact)
        # A scripted dict is kept as is: the runtimes read its outputs by name.
        outputs = as_tuple(torch.jit.load(str(artifact))(*example), recipe.output_names)
    return {
        "inputs": describe_outputs(
            recipe.input_names, [t.numpy() for t in example], recipe.dynamic_axes
        ),
        "outputs": describe_outputs(
            recipe.output_names, [t.numpy() for t in outputs], recipe.dynamic_axes
        ),
    }


def location_free_torchscript(artifact: Path) -> None:
    """Rewrite a TorchScript archive without its debug members (*.debug_pkl: the exporting
    process's call stack, with absolute paths) so the same model gives the same bytes wherever the
    checkout lives; torch's writer then derives .data/serialization_id from the content instead of
    the random one. torch.jit.load (the loader Triton's libtorch backend uses too, torch::jit::load)
    reads it as before; error traces point into the archive's code/ instead of the Python source."""
    reader = torch._C.PyTorchFileReader(str(artifact))
    records = [
        (name, reader.get_record(name))
        for name in reader.get_all_records()
        if not name.endswith(".debug_pkl") and name != ".data/serialization_id"
    ]
    del reader
    # The writer names the archive's folder after the file: write one of the same name, then move.
    with tempfile.TemporaryDirectory(dir=artifact.parent) as tmp:
        target = Path(tmp) / artifact.name
        writer = torch._C.PyTorchFileWriter(str(target))
        for name, data in records:
            writer.write_record(name, data, len(data))
        writer.write_end_of_file()
        del writer
        os.replace(target, artifact)


class _Flat(torch.nn.Module):
    """A TorchScript module whose forward() returns nested tuples, returning its tensors as one
    flat tuple (depth-first), the form Triton's PyTorch backend reads back."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        def leaves(out: Any) -> list[torch.Tensor]:
            if isinstance(out, torch.Tensor):
                return [out]
            return [t for item in out for t in leaves(item)]

        return tuple(leaves(self.inner(*inputs)))


def flat_torchscript(doc: dict[str, Any], settings: dict[str, Any], artifact: Path) -> None:
    """The served file of a TorchScript source whose forward() returns nested tuples: the file
    wrapped by a module that returns its tensors as a flat tuple. Traced around the scripted file,
    which the trace keeps as a call (its control flow and dynamic batch stay); only the tuple
    unpacking is recorded."""
    module = torch.jit.load(doc["path"], map_location="cpu").eval()
    example = sources.example_data(doc, settings, 4)
    args = tuple(torch.from_numpy(example[t["name"]]) for t in doc["inputs"])
    with torch.no_grad():
        traced = torch.jit.trace(_Flat(module), args, check_trace=False)
    torch.jit.save(traced, str(artifact))
