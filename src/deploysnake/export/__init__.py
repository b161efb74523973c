"""Export stage: the checkpointed model to TorchScript (trace, script) and ONNX, with an IO description.

The IO description (io.json) is read back from the exported artifact, not from the recipe, so the
Triton config describes what the server will really load.

The formats' exporters are in torchscript, aoti and to_onnx, the torch model's IO in torch_io, the
job in stage.
"""

from __future__ import annotations

from .stage import export, export_from_source, failure, in_recipe_order

__all__ = ["export", "export_from_source", "failure", "in_recipe_order"]
