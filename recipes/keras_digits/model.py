"""Keras digits CNN: proves the TensorFlow path (SavedModel, ONNX through tf2onnx).

Uses the digits recipe's dataloader (with params.layout: nhwc) and metrics, named in the config.
"""

from __future__ import annotations

from typing import Any

import numpy as np

INPUT_NAMES = ["image"]
OUTPUT_NAMES = ["logits"]


def build_model(params: dict[str, Any]) -> Any:
    import keras

    channels = int(params.get("channels", 8))
    image = keras.Input((8, 8, 1), name="image")
    hidden = keras.layers.Conv2D(channels, 3, padding="same", activation="relu")(image)
    hidden = keras.layers.MaxPooling2D()(hidden)
    logits = keras.layers.Dense(10, name="logits")(keras.layers.Flatten()(hidden))
    return keras.Model(image, logits)


def example_inputs(batch_size: int) -> dict[str, np.ndarray]:
    return {"image": np.zeros((batch_size, 8, 8, 1), np.float32)}


def train(model: Any, dataloader: Any, params: dict[str, Any]) -> Any:
    import keras

    batches = list(dataloader.batches("train", int(params.get("batch_size", 64)), params))
    images = np.concatenate([b["inputs"]["image"] for b in batches])
    labels = np.concatenate([b["labels"] for b in batches])
    model.compile(
        optimizer=keras.optimizers.Adam(float(params.get("lr", 3e-3))),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(
        images,
        labels,
        batch_size=int(params.get("batch_size", 64)),
        epochs=int(params.get("epochs", 5)),
        shuffle=False,
        verbose=0,
    )
    return model
