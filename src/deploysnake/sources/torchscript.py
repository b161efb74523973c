"""TorchScript files and torch.export programs as a source: loading them (load_program), the
signature TorchScript keeps (torchscript_signature), the inputs given in `models.<name>.inputs`,
and the outputs and dims found by running the program once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError
from ..trust import check_exported_program
from .data import example_data


def _load_torchscript(path: Path) -> Any:
    """torch.jit.load of a source file, its failure (not TorchScript, truncated, saved by a newer
    torch) as one UserError naming the file."""
    import torch

    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise UserError(
            f"{path} cannot be read as a TorchScript file ({last_line(exc)}); give a file written by "
            "torch.jit.save (torch.jit.script or torch.jit.trace), or the model as onnx:"
        ) from exc


def last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {(lines[-1] if lines else '')[:400]}"


def _leaf_tensors(kind_of: Any) -> int | None:
    """How many tensors a TorchScript return type holds, depth-first through tuples; None where it
    holds something else (a list, a dict, a scalar)."""
    kind = kind_of.kind()
    if kind == "TensorType":
        return 1
    if kind == "TupleType":
        counts = [_leaf_tensors(e) for e in kind_of.elements()]
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
    return None


def torchscript_signature(path: Path) -> dict[str, Any]:
    """The argument and return types of a TorchScript file's forward(), read from its schema
    (`forward.schema.arguments` / `.returns`) before anything runs, checked against what Triton's
    PyTorch backend (pytorch_backend, libtorch.cc) can bind: one tensor per configured input, or a
    single Dict[str, Tensor] argument bound by key; a tensor or a tuple of tensors back.

    Returns {"arguments": [names], "dict_argument": name or None, "returns": the return type as
    written, "leaves": tensors returned (depth-first), "nested": whether tuples nest (the served
    file is then a wrapper returning a flat tuple)}. Raises UserError naming the argument or the
    return type, and the change to forward() that serves it."""
    module = _load_torchscript(path)
    schema = module.forward.schema
    args = list(schema.arguments[1:])
    dict_argument = None
    if len(args) == 1 and str(args[0].type) == "Dict[str, Tensor]":
        dict_argument = args[0].name
    else:
        for arg in args:
            written = str(arg.type)
            if written != "Tensor":
                raise UserError(
                    f"forward() of {path} takes argument {arg.name!r} of type {written}: Triton's "
                    "PyTorch backend passes one tensor per configured input (or a single "
                    "Dict[str, Tensor] bound by key), so forward() must take tensors, one argument "
                    f"each (e.g. forward(self, features, context) in place of one {written}); "
                    "change forward() and script it again"
                )
    returns = list(schema.returns)
    written = str(returns[0].type) if len(returns) == 1 else str([str(r.type) for r in returns])
    leaves = _leaf_tensors(returns[0].type) if len(returns) == 1 else None
    if leaves is None and not written.startswith("Dict[str, Tensor]"):
        raise UserError(
            f"forward() of {path} returns {written}: Triton's PyTorch backend reads back a tensor or "
            "a tuple of tensors; return a tuple of tensors (e.g. (scores, boxes, label)) and script "
            "it again"
        )
    nested = returns[0].type.kind() == "TupleType" and any(
        e.kind() == "TupleType" for e in returns[0].type.elements()
    )
    return {
        "arguments": [a.name for a in args],
        "dict_argument": dict_argument,
        "returns": written,
        "leaves": leaves,
        "nested": nested,
    }


def load_program(path: Path, where: str) -> Any:
    """The torch.export ExportedProgram saved at path, once trust.check_exported_program has found
    nothing in it that torch.export.load would unpickle without restriction; a file torch cannot
    read as one UserError naming the file."""
    import torch

    check_exported_program(path, where)
    try:
        return torch.export.load(str(path))
    except Exception as exc:
        raise UserError(
            f"{where}.exported_program: {path} cannot be read as a torch.export program "
            f"({last_line(exc)}); save it again with torch.export.save in torch "
            f"{torch.__version__.split('+')[0]}"
        ) from exc


def dims_of_program(
    path: Path, settings: dict[str, Any], where: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Inputs and outputs from the program's graph signature: the user inputs' placeholder names,
    each tensor's dtype and dims from the graph's example values (a symbolic size: a str, i.e.
    dynamic). Outputs are named by `outputs` (default output__0, ...), in the order forward()
    returns them, flattened."""
    program = load_program(path, where)
    signature = program.graph_signature
    values = {node.name: node.meta.get("val") for node in program.graph.nodes}

    def tensor(name: str, value: Any, kind: str) -> dict[str, Any]:
        if value is None or not hasattr(value, "shape"):
            raise UserError(
                f"{where}.exported_program: {path}'s {kind} {name!r} is not a tensor "
                f"({type(value).__name__}); Triton serves tensors only: export a forward() that "
                "takes and returns tensors"
            )
        dims = [int(d) if str(d).lstrip("-").isdigit() else str(d) for d in value.shape]
        return {"name": name, "dtype": str(value.dtype).removeprefix("torch."), "dims": dims}

    inputs = [tensor(n, values.get(n), "input") for n in signature.user_inputs]
    user_outputs = list(signature.user_outputs)
    names = list(settings.get("outputs") or [f"output__{k}" for k in range(len(user_outputs))])
    if len(names) != len(user_outputs):
        raise UserError(
            f"{path} returns {len(user_outputs)} tensor(s), but {where}.outputs names "
            f"{len(names)}: {names}; name each tensor in the order forward() returns them"
        )
    outputs = [
        tensor(name, values.get(given), "output")
        for name, given in zip(names, user_outputs, strict=True)
    ]
    return inputs, outputs


def torchscript_inputs(path: Path, settings: dict[str, Any], where: str) -> list[dict[str, Any]]:
    signature = torchscript_signature(path)
    declared = settings.get("inputs") or {}
    names = signature["arguments"]
    if signature["dict_argument"]:
        # Triton's PyTorch backend binds a single Dict[str, Tensor] argument by key: the configured
        # inputs are its keys.
        names = list(declared)
        if not names:
            raise UserError(
                f"forward() of {path} takes one Dict[str, Tensor] argument "
                f"{signature['dict_argument']!r}: Triton's PyTorch backend binds it by key to the "
                f"configured inputs; list its keys under {where}.inputs, each with dtype and dims "
                "(e.g. inputs: {features: {dtype: float32, dims: [6]}})"
            )
    out = []
    for name in names:
        spec = declared.get(name) or {}
        if "dims" not in spec or "dtype" not in spec:
            raise UserError(
                f"TorchScript input {name!r} of {path}: a TorchScript file does not record input dtypes and shapes; "
                f"set {where}.inputs.{name}.dtype (e.g. float32) and {where}.inputs.{name}.dims "
                "(the sizes without the batch axis, e.g. [64])"
            )
        out.append({"name": name, "dtype": spec["dtype"], "dims": ["batch", *spec["dims"]]})
    return out


def torchscript_outputs(
    path: Path, doc: dict[str, Any], settings: dict[str, Any], where: str
) -> list[dict[str, Any]]:
    """Run the TorchScript file once on the dataloader's (or generated) inputs: its outputs' dtypes
    and dims (a nested tuple's tensors depth-first, as the served wrapper returns them)."""
    from ..runtime import ArtifactRuntime

    signature = torchscript_signature(path)
    runtime = ArtifactRuntime(path, "torchscript", [t["name"] for t in doc["inputs"]], [])
    example = example_data(doc, settings, 2)
    given = "the dataloader's" if settings.get("dataloader") else "generated"
    try:
        outs = runtime.run_flat(example)
    except Exception as exc:
        raise UserError(
            f"{path} fails on {given} inputs "
            f"({', '.join(f'{n} {a.dtype} {list(a.shape)}' for n, a in example.items())}): "
            f"{last_line(exc)}; check {where}.inputs (dtype, dims) against what forward() expects"
        ) from exc
    names = list(settings.get("outputs") or [f"output__{k}" for k in range(len(outs))])
    if len(names) != len(outs):
        raise UserError(
            f"forward() of {path} returns {signature['returns']} ({len(outs)} tensor(s), depth-first), "
            f"but {where}.outputs names {len(names)}: {names}; name each tensor in that order"
        )
    return [
        {
            "name": n,
            "dtype": str(t.dtype),
            "dims": [-1, *(int(d) for d in t.shape[1:])],
            "dynamic": {},
        }
        for n, t in zip(names, outs, strict=True)
    ]
