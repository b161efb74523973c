"""perf_analyzer's system shared-memory regions are named after the tensors alone, host-wide
(deploysnake.shm): two perf points at once whose models share a tensor name must take turns, or the
second one's regions cut the first one's and its server dies of SIGBUS (issue 29's SIGBUS row: the
ResNet's `image` against any digits run's `image` on the same host). Real servers, real
perf_analyzer."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import onnx
import yaml
from onnx import TensorProto, helper

from deploysnake import repository, server, shm, tools
from deploysnake.configuration import validate
from deploysnake.measuring import perf, workload

ROOT = Path(__file__).resolve().parents[1]
TRITON = {"max_batch_size": 8, "instances": {"cpu": 1}, "runtime_threads": 1}
# The two models' shared tensor names, this test's own: another run on the host (a digits model's
# `image`) must not meet them.
IMAGE, LOGITS = f"image{os.getpid()}", f"logits{os.getpid()}"


def test_turn_makes_a_second_holder_of_a_name_wait(tmp_path: Path) -> None:
    events: list[str] = []
    held = threading.Event()

    def first() -> None:
        with shm.turn(["image", "logits"], tmp_path):
            events.append("first in")
            held.set()
            time.sleep(0.6)
            events.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(10)
    with shm.turn(["other"], tmp_path) as waited:  # another name: no wait
        assert waited < 0.3
    with shm.turn(["logits", "x/y"], tmp_path) as waited:  # a name the first holds: its turn after
        events.append("second in")
        assert waited >= 0.3
    thread.join()
    assert events == ["first in", "first out", "second in"]
    assert shm.region_name("a/b\\c") == "abc"


def test_leftovers_are_the_regions_of_those_tensors(tmp_path: Path) -> None:
    for name in ("image_0_0", "image_1_12", "logits", "images_0_0", "logits_x", "image"):
        (tmp_path / name).write_bytes(b"")
    found = [p.name for p in shm.leftovers(["image", "logits"], tmp_path)]
    assert found == ["image", "image_0_0", "image_1_12", "logits"]


def _model(folder: Path, name: str, features: int) -> Path:
    """IMAGE float32 [batch, features] -> LOGITS float32 [batch, 1] (their sum), served in-process."""
    folder.mkdir(parents=True)
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", [IMAGE, "axes"], [LOGITS], keepdims=1)],
        name,
        [helper.make_tensor_value_info(IMAGE, TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "model.onnx")
    io = {
        "inputs": [{"name": IMAGE, "dtype": "float32", "dims": [-1, features]}],
        "outputs": [{"name": LOGITS, "dtype": "float32", "dims": [-1, 1]}],
        "format": "onnx",
        "artifact": "model.onnx",
        "status": "ok",
    }
    (folder / "io.json").write_text(json.dumps(io))
    repository.write_repository(
        name, folder / "model.onnx", folder / "io.json", TRITON, "cpu", "inprocess", folder / "r"
    )
    return folder


def test_two_points_at_once_with_one_tensor_name_both_measure(tmp_path: Path) -> None:
    """A ResNet-sized input (3x224x224 floats) and a digits-sized one (64 floats) of one name,
    measured at the same time through system shared memory on two servers: without turns the
    small one's regions cut the large one's and the large one's server dies (SIGBUS, seen here)."""
    config = validate(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    settings: dict[str, Any] = {
        **config["perf"],
        "measurement_interval_ms": 400,
        "stability_percentage": 100,
        "max_trials": 3,
        "max_foreign_cpu": 100.0,  # the two points load each other: not what is tested here
        "offline": {"batch_sizes": [4], "concurrency": [1], "shared_memory": "system"},
    }
    big, small = (
        _model(tmp_path / "big", "big", 3 * 224 * 224),
        _model(tmp_path / "small", "small", 64),
    )
    executable = tools.perf_analyzer(settings["perf_analyzer"])
    results: dict[str, tuple[str, dict[str, Any], str]] = {}
    with (
        server.TritonServer(big / "r", server.locate("bundled"), tmp_path / "big.log") as on_big,
        server.TritonServer(
            small / "r", server.locate("bundled"), tmp_path / "small.log"
        ) as on_small,
    ):

        def point(name: str, folder: Path, running: server.TritonServer, batch: int) -> None:
            io = json.loads((folder / "io.json").read_text())
            # the large one's windows longer: the small one starts while its requests run
            point_settings = {**settings, "measurement_interval_ms": 1500 if name == "big" else 400}
            load = workload.plan_load(io, point_settings, None, TRITON["max_batch_size"])
            assert load.tensors == (IMAGE, LOGITS)
            results[name] = perf.measure_point(
                executable,
                f"{name}_onnx",
                running,
                workload.Point(batch, 1),
                point_settings,
                "offline",
                tmp_path / f"{name}.csv",
                load,
            )

        large = threading.Thread(target=point, args=("big", big, on_big, 4))
        large.start()
        time.sleep(1.5)  # the large one's regions are made and registered, its requests running
        point("small", small, on_small, 1)
        large.join()
        assert on_big.process is not None and on_big.process.poll() is None, on_big.tail()
        on_big.check_alive()
    for name in ("big", "small"):
        status, measured, text = results[name]
        assert status in ("ok", "unstable", "disturbed"), (name, text[-1500:])
        if status != "unstable":
            assert float(measured["Inferences/Second"]) > 0, measured
