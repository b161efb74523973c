"""Devices: what each device name in config means, where it can run and what its hardware is.

A GPU device becomes the resources `gpu=1` and `gpu_model=<name>` of every job that measures on it;
Snakemake's slurm executor turns those into `--gpus=<model>:1`, so the job lands on a node with that
GPU. Locally the job is pinned to a matching GPU through CUDA_VISIBLE_DEVICES. Before anything is
submitted, `check_available` makes sure the machine or cluster has each device, so a typo or a
missing GPU fails at once instead of after hours in a queue.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from .errors import UserError


@dataclass(frozen=True)
class GpuKind:
    """Datasheet figures of a GPU kind (dense, no sparsity): what the hardware table shows as peaks."""

    name: str
    arch: str
    memory_gb: int
    sms: int
    fp32_tflops: float
    fp16_tflops: float  # tensor cores
    bandwidth_gbs: int
    match: str  # a word of the name nvidia-smi prints for it


GPU_KINDS: dict[str, GpuKind] = {
    "v100": GpuKind("Tesla V100 (SXM2 32 GB)", "Volta", 32, 80, 15.7, 125.0, 900, "V100"),
    "t4": GpuKind("Tesla T4", "Turing", 16, 40, 8.1, 65.0, 320, "T4"),
    "a10": GpuKind("NVIDIA A10", "Ampere", 24, 72, 31.2, 125.0, 600, "A10"),
    "a100": GpuKind("NVIDIA A100 (SXM4 80 GB)", "Ampere", 80, 108, 19.5, 312.0, 2039, "A100"),
    "l4": GpuKind("NVIDIA L4", "Ada Lovelace", 24, 58, 30.3, 121.0, 300, "L4"),
    "h100": GpuKind("NVIDIA H100 (SXM5 80 GB)", "Hopper", 80, 132, 66.9, 989.0, 3350, "H100"),
    "h200": GpuKind("NVIDIA H200 (SXM 141 GB)", "Hopper", 141, 132, 66.9, 989.0, 4800, "H200"),
}
# "gpu": any GPU, whatever its kind (no datasheet figures).
DEVICE_NAMES = ["cpu", "gpu", *GPU_KINDS]


def is_gpu(device: str) -> bool:
    return device != "cpu"


def gres_model(device: str, gpu_models: dict[str, str] | None = None) -> str:
    """The cluster's name for this GPU kind (config gpu_models maps them where a site names them otherwise)."""
    return (gpu_models or {}).get(device, device)


def resources(device: str, gpu_models: dict[str, str] | None = None) -> dict[str, int | str]:
    """Snakemake resources of a job measuring on this device."""
    if not is_gpu(device):
        return {"gpu": 0, "gpu_model": ""}
    return {"gpu": 1, "gpu_model": "" if device == "gpu" else gres_model(device, gpu_models)}


def nvidia_smi(fields: list[str]) -> list[list[str]]:
    """Rows of `nvidia-smi --query-gpu=<fields>`, one per GPU; none without a working nvidia-smi."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [[part.strip() for part in line.split(",")] for line in out.splitlines() if line.strip()]


def local_gpus() -> list[tuple[int, str]]:
    """(index, name) of this machine's GPUs."""
    return [
        (int(index), name) for index, name, *_ in nvidia_smi(["index", "name"]) if index.isdigit()
    ]


def matching_gpus(device: str, gpus: list[tuple[int, str]]) -> list[int]:
    if device == "gpu":
        return [i for i, _ in gpus]
    word = GPU_KINDS[device].match.upper()
    # "A10" must not match "A100": compare whole words of the name.
    return [i for i, name in gpus if word in name.upper().replace("-", " ").split()]


def cluster_gres() -> list[str]:
    """The generic resources of every SLURM node (sinfo %G), e.g. ['gpu:a100:4', '(null)']."""
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%G"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        raise UserError(
            f"config.devices: cannot ask SLURM which GPUs its nodes have (sinfo failed: {exc}); "
            "is the cluster reachable from here?"
        ) from exc
    return [g for line in out.splitlines() for g in line.strip().split(",") if g.strip()]


@dataclass(frozen=True)
class Node:
    """A SLURM node as `sinfo -N` lists it, once per partition it belongs to."""

    name: str
    partition: str
    default: bool  # the cluster's default partition (sinfo marks it with *)
    cpus: int
    memory_mb: int
    gpus: dict[str, int] = field(default_factory=dict)  # GRES gpu model ("" untyped) -> count

    def gpu_count(self, model: str) -> int:
        """GPUs of this model on the node ("": of any model)."""
        return sum(n for m, n in self.gpus.items() if not model or m == model)


def _gpus_of(gres: str) -> dict[str, int]:
    """{model: count} of a GRES list as sinfo prints it ("gpu:a100:4(S:0-1),gpu:t4:1", "gpu:2")."""
    found: dict[str, int] = {}
    for item in gres.split(","):
        parts = item.split("(")[0].strip().split(":")
        if parts[0] != "gpu":
            continue
        count = int(parts[-1]) if len(parts) >= 2 and parts[-1].isdigit() else 1
        model = parts[1] if len(parts) >= 3 else ""
        found[model] = found.get(model, 0) + count
    return found


def parse_nodes(text: str) -> list[Node]:
    """Nodes from `sinfo -h -N -o %N|%P|%c|%m|%G` output (e.g. "node1|debug*|2|7800|(null)")."""
    nodes = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 5:
            continue
        name, partition, cpus, memory, gres = parts
        try:
            nodes.append(
                Node(
                    name,
                    partition.rstrip("*"),
                    partition.endswith("*"),
                    int(cpus),
                    int(memory.rstrip("+")),
                    _gpus_of(gres),
                )
            )
        except ValueError:
            continue
    return nodes


def cluster_nodes() -> list[Node]:
    """The SLURM nodes, their partitions, CPUs and memory (MB), from sinfo."""
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N|%P|%c|%m|%G"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        raise UserError(
            f"cannot ask SLURM what its nodes offer (sinfo failed: {exc}); is the cluster "
            "reachable from here?"
        ) from exc
    return parse_nodes(out)


@dataclass(frozen=True)
class Request:
    """What one job of a rule asks SLURM for: CPUs (its threads, or cpus_per_task), memory (mem_mb),
    a partition (slurm_partition; None: the default) and GPUs (resources gpu, gpu_model)."""

    rule: str
    cpus: int
    memory_mb: int
    partition: str | None = None
    gpus: int = 0
    gpu_model: str = ""


def request_problems(requests: list[Request], nodes: list[Node]) -> list[str]:
    """One line per rule whose jobs ask for more CPUs, memory or GPUs than any node of their
    partition has: such a job stays pending forever (SLURM's reason: PartitionConfig or Resources), so the run
    stops before it submits anything, naming the rule, the figures and the option that lowers them."""
    problems: list[str] = []
    seen: set[tuple[str, int, int, str | None]] = set()
    for req in sorted(requests, key=lambda r: (r.rule, -r.cpus, -r.memory_mb)):
        key = (req.rule, req.cpus, req.memory_mb, req.partition)
        if key in seen or any(p.startswith(f"rule {req.rule} ") for p in problems):
            continue
        seen.add(key)
        where = [n for n in nodes if (n.partition == req.partition if req.partition else n.default)]
        label = f"partition {req.partition}" if req.partition else "the default partition"
        if not where:
            problems.append(
                f"rule {req.rule} goes to {label}, which has no nodes (sinfo); set slurm_partition "
                "in the profile's default-resources to a partition of this cluster"
            )
            continue
        most_cpus = max(n.cpus for n in where)
        most_memory = max(n.memory_mb for n in where)
        if req.cpus > most_cpus:
            problems.append(
                f"rule {req.rule} asks for {req.cpus} CPUs a job, but no node of {label} has more "
                f"than {most_cpus}; its jobs would stay pending forever. Pass --max-threads "
                f"{most_cpus} (the cores of a measuring job), or --set-threads "
                f"{req.rule}={most_cpus}"
            )
        elif req.gpus and not any(n.gpu_count(req.gpu_model) >= req.gpus for n in where):
            kind = f"gpu:{req.gpu_model}" if req.gpu_model else "gpu"
            have = sorted({f"{m or 'gpu'}:{c}" for n in where for m, c in n.gpus.items()})
            problems.append(
                f"rule {req.rule} asks for {req.gpus} x {kind} a job, but no node of {label} has "
                f"that (their GPUs: {', '.join(have) or 'none'}); its jobs would stay pending "
                "forever. Measure on a device this partition has (config devices), or send the "
                f"rule elsewhere: --set-resources {req.rule}:slurm_partition=<partition>"
            )
        elif req.memory_mb > most_memory:
            problems.append(
                f"rule {req.rule} asks for {req.memory_mb} MB of memory a job (mem_mb), but no "
                f"node of {label} has more than {most_memory} MB; its jobs would stay pending "
                f"forever. Pass --set-resources {req.rule}:mem_mb={most_memory} (or lower mem_mb "
                "in the profile's default-resources)"
            )
    return problems


def check_requests(requests: list[Request]) -> None:
    """Raise UserError when a job's request fits no SLURM node (request_problems)."""
    problems = request_problems(requests, cluster_nodes())
    if problems:
        raise UserError("jobs no SLURM node can run:\n  " + "\n  ".join(problems))


def cluster_has(device: str, gres: list[str], gpu_models: dict[str, str] | None = None) -> bool:
    gpus = [g for g in gres if g.split(":")[0] == "gpu"]
    if device == "gpu":
        return bool(gpus)
    model = gres_model(device, gpu_models)
    return any(len(parts := g.split("(")[0].split(":")) >= 3 and parts[1] == model for g in gpus)


def check_available(
    devices: list[str], executor: str, gpu_models: dict[str, str] | None = None
) -> None:
    """Fail before submission when the machine (local executor) or cluster (slurm) lacks a device."""
    gpu_devices = [d for d in devices if is_gpu(d)]
    if not gpu_devices:
        return
    if executor == "local":
        gpus = local_gpus()
        missing = [d for d in gpu_devices if not matching_gpus(d, gpus)]
        if missing:
            have = ", ".join(name for _, name in gpus) or "no GPU (no working nvidia-smi)"
            raise UserError(
                f"config.devices: {missing} are not on this machine, which has {have}; measure on "
                "what it has (e.g. devices: [cpu]), or run on a node that has them (e.g. "
                "--profile profiles/slurm)"
            )
    elif executor == "slurm":
        gres = cluster_gres()
        missing = [d for d in gpu_devices if not cluster_has(d, gres, gpu_models)]
        if missing:
            have = ", ".join(sorted({g for g in gres if g.startswith("gpu")})) or "no GPUs"
            raise UserError(
                "config.devices: no SLURM node has "
                f"{[f'gpu:{gres_model(d, gpu_models)}' for d in missing]} (the cluster's GPUs: {have}); "
                "fix the device names, or map them to the cluster's GPU names with gpu_models in the profile's config"
            )


def pin_local_gpu(device: str) -> str | None:
    """Locally, a job measuring on a GPU kind sees only one GPU of that kind. Under SLURM (which sets
    CUDA_VISIBLE_DEVICES for the GPUs it granted) or with the variable already set, leave it alone."""
    if not is_gpu(device) or "CUDA_VISIBLE_DEVICES" in os.environ:
        return os.environ.get("CUDA_VISIBLE_DEVICES")
    indices = matching_gpus(device, local_gpus())
    if not indices:
        raise UserError(
            f"device {device}: this machine has no such GPU (nvidia-smi lists {local_gpus() or 'none'})"
        )
    os.environ["CUDA_VISIBLE_DEVICES"] = str(indices[0])
    return os.environ["CUDA_VISIBLE_DEVICES"]


def hardware_row(device: str, found: dict[str, object]) -> dict[str, object]:
    """One row of the report's hardware table: what the node reported, and the kind's datasheet peaks."""
    if not is_gpu(device):
        return {
            "device": device,
            "platform": "CPU",
            "name": found.get("cpu"),
            "memory": f"{found.get('memory_gb')} GB",
            "cores / SMs": found.get("cores"),
            "peak TFLOPS (FP32/FP16)": "-",
            "memory bandwidth (GB/s)": "-",
        }
    gpus = found.get("gpus") or []
    seen = gpus[0] if isinstance(gpus, list) and gpus else {}
    kind = GPU_KINDS.get(device)
    return {
        "device": device,
        "platform": f"GPU ({kind.arch})" if kind else "GPU",
        "name": seen.get("name") or (kind.name if kind else device),
        "memory": seen.get("memory") or (f"{kind.memory_gb} GB" if kind else "-"),
        "cores / SMs": kind.sms if kind else "-",
        "peak TFLOPS (FP32/FP16)": f"{kind.fp32_tflops} ({kind.fp16_tflops})" if kind else "-",
        "memory bandwidth (GB/s)": kind.bandwidth_gbs if kind else "-",
    }


def instance_count(triton: dict[str, Any], device: str) -> int:
    """Model instances per device from the triton settings (`instances: {cpu: 2, default: 1}`)."""
    return int(triton["instances"].get(device, triton["instances"].get("default", 1)))
