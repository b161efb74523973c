"""The source model of each framework: build, train, save and load a checkpoint, and run a batch.

torch: a state_dict (torch.save, loaded with weights_only=True). keras: Keras weights (.weights.h5).
TensorFlow is imported only for keras models, so torch-only runs never load it; torch only where a
torch model is built, so the Snakefile (which reads CHECKPOINT_NAMES) starts without it.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .errors import UserError
from .plugins import Recipe
from .sources.description import load_settings, source_runner
from .sources.kinds import KINDS as SOURCE_KINDS

if TYPE_CHECKING:
    import torch

# An exported source's "checkpoint" is its IO description, written by its first job (sources.py).
CHECKPOINT_NAMES = {
    "torch": "model.pt",
    "keras": "model.weights.h5",
    **dict.fromkeys(SOURCE_KINDS, "source.json"),
}
SourceModel = Callable[[dict[str, NDArray[Any]]], dict[str, NDArray[Any]]]


@dataclass(frozen=True)
class ModelSource:
    """What one model is built from, for the stages that run it beside its artifact (export,
    correctness, accuracy): its recipe (an exported file's: the recipe sources.description makes of
    it), the recipe's params, the checkpoint (a recipe's weights file; a given file's source.json,
    CHECKPOINT_NAMES), the framework (torch, keras or a source kind, sources.kinds) and, where it
    comes from the config, the model's entry (models.<name>), from which a child process rebuilds the
    recipe (an exported source's recipe has no files of its own)."""

    # The recipe given, or None: loaded from `settings` on first use (the `recipe` property).
    loaded_recipe: Recipe | None
    params: dict[str, Any]
    checkpoint: Path
    framework: str = "torch"
    settings: dict[str, Any] | None = None

    @classmethod
    def of(cls, settings: dict[str, Any], checkpoint: str | Path) -> ModelSource:
        """The source of a model's validated config entry (models.<name>: params and framework
        filled by configuration.validate) and its checkpoint. The recipe is loaded on first use
        of `recipe`: a stage that hands the settings to a child process (correctness) does not
        import the model's code and its framework in the job's own process too."""
        return cls(None, settings["params"], Path(checkpoint), settings["framework"], settings)

    @property
    def recipe(self) -> Recipe:
        """The recipe (an exported file's: the one sources.description makes of it), loaded from
        `settings` the first time. Raises UserError for a recipe or exported file that cannot be
        loaded (sources.description.load_settings), ValueError where neither was given."""
        if self.loaded_recipe is None:
            if self.settings is None:
                raise ValueError("a ModelSource needs a recipe or the model's settings")
            # frozen: the loaded recipe is a cache, not a change of what the source is
            object.__setattr__(self, "loaded_recipe", load_settings(self.settings))
        assert self.loaded_recipe is not None
        return self.loaded_recipe

    def runner(self) -> SourceModel:
        """The source model as a callable on named numpy inputs (source_model)."""
        return source_model(self.framework, self.recipe, self.params, self.checkpoint)


# Where training code puts the model's state_dict in the dict it saves (PyTorch's "Saving and loading
# a general checkpoint" tutorial: model_state_dict; Lightning: state_dict; torchvision's reference
# scripts and many repos: model; timm: state_dict / state_dict_ema), tried in this order.
STATE_KEYS = ("state_dict", "model_state_dict", "model", "model_state", "net", "network", "module")
# Prefixes wrappers add to every key: DataParallel/DistributedDataParallel ("module.") and
# torch.compile's OptimizedModule ("_orig_mod.").
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _is_state(value: Any) -> bool:
    import torch

    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) for k in value)
        and any(isinstance(v, torch.Tensor) for v in value.values())
    )


def _unwrapped(state: dict[str, Any]) -> dict[str, Any]:
    """The state with the wrapper prefixes every key carries taken off (repeatedly: a compiled
    DataParallel module's keys start "module._orig_mod.")."""
    changed = True
    while changed and state:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def state_dict_of(loaded: Any, expected: list[str], path: str | Path) -> dict[str, Any]:
    """The model's state_dict inside what torch.load returned: the dict itself where it holds
    tensors, else the training dict's entry under STATE_KEYS (or any dict of tensors whose keys fit
    the model best), with wrapper prefixes (WRAPPER_PREFIXES) removed. expected: the model's own
    state_dict keys. Raises UserError naming the top-level keys found where no dict of tensors is."""
    if not isinstance(loaded, dict):
        raise UserError(
            f"checkpoint {path} holds a {type(loaded).__name__}, not a dict of tensors: save the "
            "model's weights with torch.save(model.state_dict(), path)"
        )
    candidates: list[dict[str, Any]] = []
    if _is_state(loaded) and not any(_is_state(loaded.get(k)) for k in STATE_KEYS):
        candidates.append(loaded)
    candidates += [loaded[k] for k in STATE_KEYS if _is_state(loaded.get(k))]
    candidates += [
        v for v in loaded.values() if _is_state(v) and not any(v is c for c in candidates)
    ]
    if not candidates:
        raise UserError(
            f"checkpoint {path} has no dict of tensors (top-level keys: {sorted(map(str, loaded))[:12]}): "
            f"save the model's state_dict, or put it under one of {list(STATE_KEYS)}"
        )
    wanted = set(expected)
    # Known keys come first; among several, the one whose (unwrapped) keys fit the model best.
    return max(
        (_unwrapped(c) for c in candidates),
        key=lambda state: len(wanted & set(state)),
    )


def load_state(recipe: Recipe, params: dict[str, Any], path: str | Path) -> torch.nn.Module:
    """Build the recipe's model and load a checkpoint into it, as training code saves them: a
    state_dict, or a training dict around it ({"state_dict": ...}, {"model": ...},
    {"model_state_dict": ..., "optimizer": ...}), keys with DataParallel/DDP's "module." or
    torch.compile's "_orig_mod." prefix, tensors saved on a GPU (loaded to the CPU). Weights only
    (torch.load(weights_only=True)): no pickled code runs. Raises UserError for a missing,
    unreadable or unfitting file, naming what was found and what to pass."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"checkpoint not found: {path} (set models.<name>.checkpoint to an existing file, or "
            "leave it empty to train)"
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refuses pickled objects (args, classes)
        raise UserError(
            f"checkpoint {path} holds objects other than tensors and plain containers, which "
            f"deploysnake does not unpickle ({str(exc).strip().splitlines()[-1][:300]}): save "
            "the model's weights alone, torch.save(model.state_dict(), path)"
        ) from exc
    except Exception as exc:  # torch raises several types for truncated/corrupt files
        raise UserError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); is it truncated or not a torch.save file?"
        ) from exc
    model: torch.nn.Module = recipe.model.build_model(params)
    expected = list(model.state_dict())
    state = state_dict_of(loaded, expected, path)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in set(expected)]
    if missing or unexpected:
        found = f"top-level keys {sorted(map(str, loaded))[:8]}; " if state is not loaded else ""
        raise UserError(
            f"checkpoint {path} does not fit the recipe's model ({recipe.folder / 'model.py'}): "
            f"{found}the model's parameters missing from it: {missing[:5]}, names it has that the "
            f"model lacks: {unexpected[:5]}: pass the state_dict of this model "
            "(torch.save(model.state_dict(), path)) or the models.<name>.params it was trained with"
        )
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise UserError(
            f"checkpoint {path} does not fit the recipe's model ({recipe.folder / 'model.py'}): "
            f"{str(exc).strip().splitlines()[-1][:500]}"
        ) from exc
    return model.eval()


def train(recipe: Recipe, params: dict[str, Any]) -> torch.nn.Module:
    import torch

    if not hasattr(recipe.model, "train"):
        raise UserError(
            f"{recipe.folder / 'model.py'} has no train(); set models.<name>.checkpoint to a trained checkpoint"
        )
    seed = int(params.get("seed", 0))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    # One thread: float reductions then happen in one order, so the weights are the same bytes every run.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model: torch.nn.Module = recipe.model.build_model(params)
        trained: torch.nn.Module = recipe.model.train(model, recipe.dataloader, params)
        return trained.eval()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)


def source_outputs(
    model: torch.nn.Module, recipe: Recipe, inputs: dict[str, NDArray[Any]]
) -> dict[str, NDArray[Any]]:
    import torch

    with torch.inference_mode():
        out: Any = model(*(torch.from_numpy(inputs[n]) for n in recipe.input_names))
    if isinstance(out, torch.Tensor):
        out = (out,)
    elif isinstance(out, dict):  # matched by name, whatever the dict's key order
        out = tuple(out[n] for n in recipe.output_names)
    return {n: t.numpy() for n, t in zip(recipe.output_names, out, strict=True)}


def _keras_deterministic(params: dict[str, Any]) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(params.get("seed", 0)))
    tf.config.experimental.enable_op_determinism()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised in this process: keep its threads
        pass


def keras_model(recipe: Recipe, params: dict[str, Any], checkpoint: str | Path) -> Any:
    path = Path(checkpoint)
    if not path.is_file():
        raise UserError(
            f"checkpoint not found: {path} (set models.<name>.checkpoint to an existing file, or "
            "leave it empty to train)"
        )
    model = recipe.model.build_model(params)
    with tempfile.TemporaryDirectory(prefix="deploysnake-keras-") as tmp:
        # Keras insists on the .weights.h5 suffix; a user's checkpoint may be named otherwise.
        local = Path(tmp) / "model.weights.h5"
        shutil.copyfile(path, local)
        try:
            model.load_weights(str(local))
        except Exception as exc:  # h5py/keras raise several types for bad files
            raise UserError(
                f"checkpoint {path} does not fit the recipe's Keras model or cannot be read: {exc}"
            ) from exc
    return model


def make_keras_checkpoint(
    recipe: Recipe, params: dict[str, Any], source: str | None, output: str | Path
) -> None:
    _keras_deterministic(params)
    if source:
        model = keras_model(recipe, params, source)
    else:
        if not hasattr(recipe.model, "train"):
            raise UserError(
                f"{recipe.folder / 'model.py'} has no train(); set models.<name>.checkpoint to trained weights"
            )
        model = recipe.model.train(recipe.model.build_model(params), recipe.dataloader, params)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(output))


def source_model(
    framework: str, recipe: Recipe, params: dict[str, Any], checkpoint: str | Path
) -> SourceModel:
    """A callable running the source model on named numpy inputs, for correctness and accuracy."""
    if framework in SOURCE_KINDS:  # a given file: its "checkpoint" is its source.json
        return source_runner(checkpoint)  # type: ignore[no-any-return]
    if framework == "keras":
        model = keras_model(recipe, params, checkpoint)

        def run_keras(inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
            out = model(
                [inputs[n] for n in recipe.input_names]
                if len(recipe.input_names) > 1
                else inputs[recipe.input_names[0]],
                training=False,
            )
            outs = out if isinstance(out, (list, tuple)) else [out]
            return {n: np.asarray(t) for n, t in zip(recipe.output_names, outs, strict=True)}

        return run_keras
    torch_model = load_state(recipe, params, checkpoint)
    return lambda inputs: source_outputs(torch_model, recipe, inputs)


def export_savedmodel(
    recipe: Recipe, params: dict[str, Any], checkpoint: str | Path, target: str | Path
) -> dict[str, Any]:
    """A SavedModel whose serving signature uses the recipe's input and output names (what Triton's
    tensorflow_savedmodel backend and tf2onnx read)."""
    import tensorflow as tf

    model = keras_model(recipe, params, checkpoint)
    example = recipe.model.example_inputs(4)
    specs = [
        tf.TensorSpec([None, *example[n].shape[1:]], tf.as_dtype(example[n].dtype), name=n)
        for n in recipe.input_names
    ]
    names = list(recipe.output_names)

    class Serving(tf.Module):  # type: ignore[misc]
        def __init__(self, keras_model: Any) -> None:
            super().__init__()
            self.model = keras_model

        @tf.function(input_signature=specs)  # type: ignore[untyped-decorator]  # tensorflow: no types
        def serve(self, *tensors: Any) -> dict[str, Any]:
            out = self.model(list(tensors) if len(tensors) > 1 else tensors[0], training=False)
            outs = out if isinstance(out, (list, tuple)) else [out]
            return dict(zip(names, outs, strict=True))

    module = Serving(model)
    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.serve})
    outputs = module.serve(*[tf.constant(example[n]) for n in recipe.input_names])
    return {
        "inputs": [
            {
                "name": n,
                "dtype": str(example[n].dtype),
                "dims": [-1, *(int(d) for d in example[n].shape[1:])],
            }
            for n in recipe.input_names
        ],
        "outputs": [
            {
                "name": n,
                "dtype": str(np.dtype(outputs[n].dtype.as_numpy_dtype)),
                "dims": [-1, *(int(d) for d in outputs[n].shape[1:])],
            }
            for n in names
        ],
    }
