"""Run an exported artifact in-process with the runtime that reads it (onnxruntime, torch's
TorchScript and AOTInductor loaders, TensorFlow).

This file is self-contained (numpy plus the runtime, imported lazily) because it is also copied into
the served model repository, where Triton's python backend loads it as the model's runner.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

# Set by every measuring job (deploysnake.processes.size_thread_pools) to the CPUs it may use.
CPUS_VARIABLE = "DEPLOYSNAKE_CPUS"


def job_cpus() -> int:
    """The CPUs the job that runs this process may use: $DEPLOYSNAKE_CPUS when the job set it, else
    this process's CPU affinity. Never os.cpu_count() nor $OMP_NUM_THREADS (Snakemake's --cores)."""
    value = os.environ.get(CPUS_VARIABLE, "")
    return int(value) if value.isdigit() and int(value) > 0 else len(os.sched_getaffinity(0))


def runtime_threads(setting: int, instances: int = 1) -> int:
    """Explicit runtime threads per instance: `setting` when > 0; 0 (the runtime's default) becomes
    the job's CPUs shared among the instances, at least 1 (as deploysnake.processes does)."""
    return int(setting) if int(setting) > 0 else max(1, job_cpus() // max(1, int(instances)))


# ONNX Runtime's graph optimization levels by name -> Triton's `optimization { graph { level } }`,
# as Triton's onnxruntime backend maps them (onnxruntime_backend src/onnxruntime.cc: -1 basic,
# 1 extended, 2 disabled; absent or 0 all).
GRAPH_LEVELS = {"all": 0, "extended": 1, "basic": -1, "disabled": 2}
EXECUTION_MODES = ("sequential", "parallel")


def options_from_config(config: dict[str, Any]) -> dict[str, Any]:
    """The runtime options a model's config asks for (Triton's JSON form of config.pbtxt, as a
    backend receives it), read as Triton's own backends read them, so a setting measured through the
    bundled runner means what it means to them: threads from the onnxruntime backend's
    `intra_op_thread_count` or the PyTorch backend's `INTRA_OP_THREAD_COUNT` (or deploysnake's own
    `threads`), inter-op threads from `inter_op_thread_count` / `INTER_OP_THREAD_COUNT`,
    `execution_mode` "1" parallel (else sequential), `optimization.graph.level` (GRAPH_LEVELS).
    Counts are ints (0: the runtime's default); raises ValueError for a count that is no integer."""
    params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}

    def count(*keys: str) -> int:
        return next((int(params[k]) for k in keys if params.get(k, "") != ""), 0)

    level = int(config.get("optimization", {}).get("graph", {}).get("level", 0))
    return {
        "threads": count("intra_op_thread_count", "INTRA_OP_THREAD_COUNT", "threads"),
        "inter_op_threads": count("inter_op_thread_count", "INTER_OP_THREAD_COUNT"),
        "execution_mode": "parallel" if params.get("execution_mode") == "1" else "sequential",
        "graph_optimization_level": {v: k for k, v in GRAPH_LEVELS.items()}.get(level, "all"),
    }


def _text(array: NDArray[Any]) -> NDArray[Any]:
    """A string tensor as ONNX Runtime reads it: an object array of str. Triton's BYTES arrive as
    bytes, which ONNX Runtime would turn into their repr ("b'text'"); they are decoded as UTF-8
    (bytes that are no UTF-8 kept as surrogate escapes). Other arrays are returned as given."""
    if getattr(array, "dtype", None) is None or array.dtype.kind not in "OS":
        return array
    flat = [
        v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v
        for v in array.ravel().tolist()
    ]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


def _interop_threads(torch: Any, count: int) -> None:
    """torch's inter-op threads, where count > 0: settable once per process, before any inter-op
    work (RuntimeError after); as Triton's PyTorch backend, the first value set wins."""
    if count > 0:
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(count)


def canonical_strides(array: NDArray[Any]) -> NDArray[Any]:
    """The array with C-order strides on every axis, its size-1 axes included; a copy only where
    they differ. numpy and torch call an array contiguous whatever the stride of a size-1 axis
    (`images[:, None]` of a slice: shape (64, 1, 8, 8), strides (256, 4, 32, 4)), and torch's
    kernels accept it, but code AOTInductor compiled (torch 2.13, CPU) reads it with that stride:
    the digits model's logits off by up to 21.9 on such a batch, exact on its copy, no error
    (measured: ../shared/FACTS.md)."""
    expected, step = [], array.itemsize
    for size in reversed(array.shape):
        expected.append(step)
        step *= max(size, 1)
    if tuple(reversed(expected)) == array.strides:
        return array
    return np.array(array, order="C", copy=True)


class ArtifactRuntime:
    """Load an artifact once; run batches of named numpy inputs -> named numpy outputs."""

    def __init__(
        self,
        artifact: str | Path,
        fmt: str,
        input_names: list[str],
        output_names: list[str],
        threads: int = 0,
        device: str = "cpu",
        instances: int = 1,
        inter_op_threads: int = 0,
        execution_mode: str = "sequential",
        graph_optimization_level: str = "all",
    ) -> None:
        """device: "cpu", or "cuda"/"cuda:N" for the GPU path (ONNX Runtime's TensorRT and CUDA
        providers, TorchScript on CUDA). Unverified here: the project's machines have no GPU.
        threads: this runtime's threads; 0: the job's CPUs over `instances` (runtime_threads).
        inter_op_threads (0: one for ONNX Runtime in sequential execution, where it has no use,
        else the runtime's default), execution_mode ("sequential" or "parallel") and
        graph_optimization_level (GRAPH_LEVELS' names) as Triton's backends apply them: ONNX
        Runtime takes all three; torch the inter-op threads (once per process, the first value
        wins, as in Triton's PyTorch backend); the other runtimes none.
        `settings` holds what the runtime was given, read back from it where it can say."""
        threads = runtime_threads(threads, instances)
        self.threads = threads
        self.settings: dict[str, Any] = {}
        self.fmt = fmt
        self.device = device
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self._compiled = False  # AOTInductor code: inputs with C-order strides
        artifact = str(artifact)
        if fmt.startswith("onnx"):
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            parallel = execution_mode == "parallel"
            options.inter_op_num_threads = inter_op_threads or (0 if parallel else 1)
            options.execution_mode = (
                ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
            )
            options.graph_optimization_level = {
                "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            }[graph_optimization_level]
            self._session = ort.InferenceSession(
                artifact, options, providers=self._onnx_providers(ort, fmt, device)
            )
            self._bfloat16 = any(
                t.type == "tensor(bfloat16)"
                for t in [*self._session.get_inputs(), *self._session.get_outputs()]
            )
            given = self._session.get_session_options()
            self.settings = {
                "runtime": f"onnxruntime {ort.__version__}",
                "intra_op_num_threads": given.intra_op_num_threads,
                "inter_op_num_threads": given.inter_op_num_threads,
                "execution_mode": given.execution_mode.name,
                "graph_optimization_level": given.graph_optimization_level.name,
            }
            self._run = self._run_onnx
        elif fmt.startswith("torchscript"):
            import torch

            torch.set_num_threads(threads)
            _interop_threads(torch, inter_op_threads)
            self.settings = {
                "runtime": f"torch {torch.__version__}",
                "num_threads": torch.get_num_threads(),
                "num_interop_threads": torch.get_num_interop_threads(),
            }
            self._torch = torch
            self._module = torch.jit.load(artifact, map_location=device).eval()
            # A single Dict[str, Tensor] argument is bound by key to the input names, as Triton's
            # PyTorch backend does; otherwise one tensor per argument, in order.
            arguments = self._module.forward.schema.arguments[1:]
            self._dict_input = len(arguments) == 1 and str(arguments[0].type).startswith("Dict[")
            self._run = self._run_torchscript
        elif fmt.startswith("aoti"):
            import torch
            import torch._inductor

            torch.set_num_threads(threads)
            _interop_threads(torch, inter_op_threads)
            self.settings = {
                "runtime": f"torch {torch.__version__} (AOTInductor)",
                "num_threads": torch.get_num_threads(),
                "num_interop_threads": torch.get_num_interop_threads(),
            }
            self._torch = torch
            # The compiled model's own runner: no Python model code, no graph interpretation.
            self._module = torch._inductor.aoti_load_package(artifact)
            self._dict_input = False
            self._compiled = True
            self._run = self._run_torchscript
        elif fmt == "exported_program":
            # A torch.export program given as the source: the reference, run by torch's graph
            # interpreter. Never served; deploysnake.sources.source_runner_of checks the archive
            # (trust.check_exported_program) before it comes here.
            import torch

            torch.set_num_threads(threads)
            self.settings = {
                "runtime": f"torch {torch.__version__} (torch.export)",
                "num_threads": torch.get_num_threads(),
            }
            self._torch = torch
            self._module = torch.export.load(artifact).module()
            self._dict_input = False
            self._run = self._run_torchscript
        elif fmt == "savedmodel":
            import tensorflow as tf

            # RuntimeError: TensorFlow already initialised in this process.
            with contextlib.suppress(RuntimeError):
                tf.config.threading.set_intra_op_parallelism_threads(threads)
            self.settings = {
                "runtime": f"tensorflow {tf.__version__}",
                "intra_op_parallelism_threads": (
                    tf.config.threading.get_intra_op_parallelism_threads()
                ),
            }
            self._tf = tf
            self._signature = tf.saved_model.load(artifact).signatures["serving_default"]
            self._run = self._run_savedmodel
        else:
            raise ValueError(f"no in-process runtime for format {fmt!r}")

    def _run_savedmodel(self, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        out = self._signature(**{n: self._tf.constant(inputs[n]) for n in self.input_names})
        return {n: out[n].numpy() for n in self.output_names}

    @staticmethod
    def _onnx_providers(ort: Any, fmt: str, device: str) -> list[Any]:
        if device == "cpu":
            return ["CPUExecutionProvider"]
        available = set(ort.get_available_providers())
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(
                f"device {device}: this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
            )
        device_id = int(device.split(":")[1]) if ":" in device else 0
        providers: list[Any] = []
        if "TensorrtExecutionProvider" in available and fmt != "onnx_int8":
            providers.append(
                (
                    "TensorrtExecutionProvider",
                    {"device_id": device_id, "trt_fp16_enable": fmt == "onnx_fp16"},
                )
            )
        return [
            *providers,
            ("CUDAExecutionProvider", {"device_id": device_id}),
            "CPUExecutionProvider",
        ]

    def _run_onnx(self, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        inputs = {n: _text(a) for n, a in inputs.items()}
        if self._bfloat16:
            return self._run_onnx_values(inputs)
        outputs = self._session.run(self.output_names, inputs)
        return dict(zip(self.output_names, outputs, strict=True))

    def _run_onnx_values(self, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """A run with bfloat16 tensors, which ONNX Runtime's numpy interface refuses ("Numpy_type
        256 can't be converted"): bfloat16 arrays (ml_dtypes) go in as OrtValues of their raw 16-bit
        words, bfloat16 outputs are copied out of their OrtValues' memory the same way."""
        import ctypes

        import ml_dtypes
        import onnxruntime as ort

        bf16 = 16  # onnx.TensorProto.BFLOAT16
        feeds = {
            n: ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
                np.ascontiguousarray(a).view(np.uint16), bf16
            )
            if a.dtype == np.dtype(ml_dtypes.bfloat16)
            else ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a))
            for n, a in inputs.items()
        }
        values = self._session.run_with_ort_values(self.output_names, feeds)
        out = {}
        for name, value in zip(self.output_names, values, strict=True):
            if value.data_type() == "tensor(bfloat16)":
                shape = [int(d) for d in value.shape()]
                words = (ctypes.c_uint16 * int(np.prod(shape))).from_address(value.data_ptr())
                array = np.frombuffer(memoryview(words), np.uint16).copy().reshape(shape)
                out[name] = array.view(ml_dtypes.bfloat16)
            else:
                out[name] = value.numpy()
        return out

    def _call_torchscript(self, inputs: dict[str, NDArray[Any]]) -> Any:
        torch = self._torch
        # from_numpy shares memory: no copy on the way in (AOTInductor: but for odd strides;
        # TorchScript takes them as eager torch does, so its outputs stay bit-identical).
        tensors = {
            n: torch.from_numpy(canonical_strides(inputs[n]) if self._compiled else inputs[n]).to(
                self.device
            )
            for n in self.input_names
        }
        with torch.inference_mode():
            if self._dict_input:
                return self._module(tensors)
            return self._module(*tensors.values())

    def _flatten(self, out: Any) -> list[Any]:
        """A tensor, or a tuple/list nesting tensors, as its tensors depth-first."""
        if isinstance(out, self._torch.Tensor):
            return [out]
        if isinstance(out, dict):
            return [t for v in out.values() for t in self._flatten(v)]
        return [t for item in out for t in self._flatten(item)]

    def run_flat(self, inputs: dict[str, NDArray[Any]]) -> list[NDArray[Any]]:
        """TorchScript: every tensor forward() returns, depth-first through nested tuples."""
        return [t.cpu().numpy() for t in self._flatten(self._call_torchscript(inputs))]

    def _run_torchscript(self, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        out = self._call_torchscript(inputs)
        if isinstance(out, dict):  # a scripted model's dict: matched by name
            out = tuple(out[n] for n in self.output_names)
        flat = self._flatten(out)
        return {n: t.cpu().numpy() for n, t in zip(self.output_names, flat, strict=True)}

    def describe(self) -> str:
        """One line for logs: the runtime and the thread settings it holds ("onnxruntime 1.x
        intra_op_num_threads=2 inter_op_num_threads=1 (job CPUs 2)")."""
        given = " ".join(f"{k}={v}" for k, v in self.settings.items() if k != "runtime")
        return f"{self.settings.get('runtime', self.fmt)} {given} (job CPUs {job_cpus()})"

    def __call__(self, inputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        return self._run(inputs)
