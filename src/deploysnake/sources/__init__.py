"""Exported models as the source: an ONNX file, a TorchScript file, a SavedModel, a Triton model
directory or a torch.export program given in the config (`models.<name>.onnx` etc.) instead of a
recipe.

The given file is the reference every conversion is checked against. Its IO (names, dtypes, dims,
batch axis) is read from the file, or from the model directory's config.pbtxt; what a file cannot
tell (which axis is the batch, a dynamic axis's length, an integer input's valid range, a
TorchScript input's dtype and shape) comes from `models.<name>.batch_axis` and
`models.<name>.inputs`, and anything still ambiguous is a UserError naming the tensor and the key.

Without a `dataloader`, inputs are generated from that description with a fixed seed, each input
within its range (`inputs.<name>.low`/`high`, inclusive); without `metrics` there is no task metric,
and the accuracy stage compares outputs with the source's (max abs diff).

Light at import time (the Snakefile imports it at every start): onnx, torch and TensorFlow are
imported only where a file of theirs is read.
"""

from __future__ import annotations

from .data import example_data, generate
from .describe import describe, io_entries
from .description import (
    load_settings,
    source_runner,
    source_runner_of,
    write_description,
    write_description_isolated,
)
from .kinds import (
    DEFAULT_FILES,
    KINDS,
    OWN_FORMAT,
    SOURCE_KEYS,
    SOURCE_ONLY,
    config_problems,
    is_source,
    rule_inputs,
    source_files,
)
from .torchscript import load_program

__all__ = [
    "DEFAULT_FILES",
    "KINDS",
    "OWN_FORMAT",
    "SOURCE_KEYS",
    "SOURCE_ONLY",
    "config_problems",
    "describe",
    "example_data",
    "generate",
    "io_entries",
    "is_source",
    "load_program",
    "load_settings",
    "rule_inputs",
    "source_files",
    "source_runner",
    "source_runner_of",
    "write_description",
    "write_description_isolated",
]
