"""Write a deployable folder for a model that no recipe produced: a scikit-learn classifier of the
bundled digits data, converted to ONNX with skl2onnx.

    python examples/sklearn_digits/make_model.py my_models/sklearn_digits
    snakemake results/report.html --cores 8 --configfile my_models/sklearn_digits/config.yaml

The folder gets model.onnx, dataloader.py and metrics.py (the README's plugin contract: the same
validation split the training left out, and accuracy) and config.yaml, which deploys the file from
`onnx:`. skl2onnx's `zipmap: False` option gives plain tensor outputs (`label`: int64 [batch],
`probabilities`: float32 [batch, 10]) instead of a sequence of maps, which Triton cannot serve. The
file keeps `probabilities` only: a batched Triton output needs an axis besides the batch (`label`,
[batch], would need a reshape in config.pbtxt), and the label is its argmax.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier

# Validation: the first VALIDATION samples of a seeded permutation; the dataloader below uses the same.
SEED = 0
VALIDATION = 360

DATALOADER = f'''"""The digits split make_model.py trained on: validation is the {VALIDATION} samples it left out."""

import numpy as np
from sklearn.datasets import load_digits


def batches(split, batch_size, params):
    data = load_digits()
    pixels = (data.data / 16.0).astype(np.float32)
    order = np.random.default_rng({SEED}).permutation(len(pixels))
    idx = order[:{VALIDATION}] if split == "validation" else order[{VALIDATION}:]
    for start in range(0, len(idx), batch_size):
        part = idx[start : start + batch_size]
        yield {{"ids": part, "inputs": {{"pixels": pixels[part]}}, "labels": data.target[part]}}
'''

METRICS = """def compute(outputs, labels):
    return {"accuracy": float((outputs["probabilities"].argmax(axis=1) == labels).mean())}
"""

CONFIG = """# Deploy the scikit-learn digits classifier from its ONNX file (no recipe).
models:
  sklearn_digits:
    onnx: {folder}/model.onnx
    dataloader: {folder}/dataloader.py
    metrics: {folder}/metrics.py
formats: auto
devices: [cpu]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where to write model.onnx, dataloader.py, ...")
    parser.add_argument("--hidden", type=int, default=32, help="hidden units of the MLP")
    args = parser.parse_args()
    folder: Path = args.folder
    folder.mkdir(parents=True, exist_ok=True)

    data = load_digits()
    pixels = (data.data / 16.0).astype(np.float32)
    order = np.random.default_rng(SEED).permutation(len(pixels))
    train = order[VALIDATION:]
    clf = MLPClassifier(hidden_layer_sizes=(args.hidden,), max_iter=300, random_state=SEED)
    clf.fit(pixels[train], data.target[train])

    onnx_model = to_onnx(
        clf,
        initial_types=[("pixels", FloatTensorType([None, 64]))],  # None: a dynamic batch axis
        options={id(clf): {"zipmap": False}},  # plain tensors, not a sequence of maps
        target_opset={"": 18, "ai.onnx.ml": 3},
    )
    # probabilities only (see above); the Extractor keeps the nodes that output needs.
    onnx_model = onnx.utils.Extractor(onnx_model).extract_model(["pixels"], ["probabilities"])
    onnx.checker.check_model(onnx_model, full_check=True)
    (folder / "model.onnx").write_bytes(onnx_model.SerializeToString())
    (folder / "dataloader.py").write_text(DATALOADER)
    (folder / "metrics.py").write_text(METRICS)
    (folder / "config.yaml").write_text(CONFIG.format(folder=folder))
    valid = order[:VALIDATION]
    accuracy = float((clf.predict(pixels[valid]) == data.target[valid]).mean())
    print(
        f"wrote {folder}/model.onnx (validation accuracy {accuracy:.3f}), dataloader.py, metrics.py, config.yaml"
    )


if __name__ == "__main__":
    main()
