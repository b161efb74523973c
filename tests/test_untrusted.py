"""Untrusted files, careless configs and two runs in one folder (issue 36): one test per probe.

Most are config validation calls or calls of the package on crafted files; the bombs and the
templating go through a dry run (they must be refused before Snakemake expands them); the lock test
holds one real run (a training that sleeps) beside a dry run and a second real run."""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from deploysnake.configuration import check_raw, network_problems, validate
from deploysnake.errors import UserError

from .conftest import ROOT, snakemake

DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
UNTRUSTED = ROOT / "tests" / "recipes" / "untrusted"
WINE = ROOT / "tests" / "recipes" / "wine"


def changed(**edits: object) -> dict:
    config = copy.deepcopy(DEFAULT)
    for dotted, value in edits.items():
        *parents, last = dotted.split("__")
        node = config
        for key in parents:
            node = node[key]
        node[last] = value
    return config


def refused(config: object) -> str:
    with pytest.raises(UserError) as error:
        validate(config)  # type: ignore[arg-type]
    return str(error.value)


# ---------------------------------------------------------------- the config, checked whole

BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}' if prev else 'lol'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)


def test_billion_laughs_is_refused_at_once() -> None:
    config = yaml.safe_load(BOMB)  # aliases: shared lists, 9**9 values once expanded
    start = time.monotonic()
    message = refused(config)
    assert time.monotonic() - start < 1.0
    assert "more than 100000 values" in message and "aliases" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("selection__p99_budget_ms", float("nan")),
        ("correctness__timeout_s", float("nan")),
        ("native__window_s", float("nan")),
        ("perf__capacity__p99_budget_ms", float("inf")),
    ],
)
def test_nan_and_inf_are_refused(key: str, value: float) -> None:
    message = refused(changed(**{key: value}))
    assert f"config.{key.replace('__', '.')}: {value} is not a finite number" in message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("abc\n", "name 'abc\\n' is not allowed"),
        (123, "key 123 is not a string but int"),
        ("a" * 25, f"name {'a' * 25!r} ends in 'a' repeated 20 times or more"),
    ],
)
def test_model_names_are_matched_whole(name: object, expected: str) -> None:
    assert expected in refused(changed(models={name: {"recipe": "recipes/digits"}}))


def test_pinned_ports_must_differ() -> None:
    message = refused(
        changed(triton__http_port=8000, triton__grpc_port=8000, triton__metrics_port=8000)
    )
    assert "http_port, grpc_port, metrics_port are all 8000" in message


def test_int32_and_memory_bounds() -> None:
    assert "max_batch_size: 2147483648 is greater than the maximum of 2147483647" in refused(
        changed(triton__max_batch_size=2**31)
    )
    assert "instances.cpu: 100000 is greater than the maximum of 64" in refused(
        changed(triton__instances={"cpu": 100_000})
    )
    model = {"torchscript": "model.pt", "inputs": {"x": {"dtype": "float32", "dims": [2**31]}}}
    assert "dims[0]: 2147483648 is greater than the maximum" in refused(
        changed(models={"m": model})
    )
    model["inputs"]["x"]["dims"] = [2**28]  # 1 GiB a sample: 256 GiB a batch of 256
    assert "make a batch of 256 256.0 GiB, above the 4 GiB" in refused(changed(models={"m": model}))


@pytest.mark.parametrize(
    ("formats", "expected"),
    [
        (
            [],
            "config.formats: [] is empty; give at least 1 value(s); allowed values: auto; or a "
            "list of torchscript_trace",
        ),
        (["onnx", "onnx"], "config.formats: duplicate value(s) ['onnx'] in ['onnx', 'onnx']"),
        (
            "AUTO",
            "config.formats: 'AUTO' is not allowed; allowed values: auto; or a list of torchscript_trace",
        ),
    ],
)
def test_formats_messages_say_what_is_wrong(formats: object, expected: str) -> None:
    assert expected in refused(changed(formats=formats))


def test_host_resolves_and_other_than_loopback_warns() -> None:
    problems, warnings = network_problems(validate(changed(triton__host="0.0.0.0")))
    assert problems == [] and "not loopback" in warnings[0] and "open to the network" in warnings[0]
    assert network_problems(validate(DEFAULT)) == ([], [])
    problems, _ = network_problems(validate(changed(triton__host="no-such-host.invalid")))
    assert "config.triton.host: 'no-such-host.invalid' does not resolve" in problems[0]


def test_pinned_port_in_use_is_refused() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        problems, _ = network_problems(validate(changed(triton__http_port=port)))
    assert f"triton.http_port {port} on 127.0.0.1 is in use by another process" in problems[0]


def test_templating_and_size_are_refused_from_the_file(tmp_path: Path) -> None:
    yte = tmp_path / "yte.yaml"
    yte.write_text("__use_yte__: true\nformats: [onnx]\n")
    with pytest.raises(UserError, match="YTE templating"):
        check_raw({"formats": ["onnx"]}, [yte])
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1 << 20) + "\nformats: [onnx]\n")
    with pytest.raises(UserError, match="above the 1048576 a config may have"):
        check_raw({"formats": ["onnx"]}, [big])


def test_dry_run_refuses_the_bomb_and_the_templating(tmp_path: Path) -> None:
    """Before Snakemake merges the config into the default and hashes it (measured before: 38 s,
    then MemoryError), and whatever Snakemake's YTE made of the file."""
    (tmp_path / "bomb.yaml").write_text(BOMB)
    (tmp_path / "yte.yaml").write_text("__use_yte__: true\nformats:\n  ?if True:\n    - onnx\n")
    for name, expected in (("bomb", "more than 100000 values"), ("yte", "YTE templating")):
        start = time.monotonic()
        done = snakemake(
            "-n", "--configfile", f"{name}.yaml", cwd=tmp_path, check=False, timeout=120
        )
        assert done.returncode != 0 and expected in done.stdout + done.stderr
        assert time.monotonic() - start < 60  # Snakemake's own start-up; the check takes ms


# ---------------------------------------------------------------- the user's code: time-outs, exits


def test_import_that_hangs_times_out_naming_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from deploysnake.plugins import load_recipe

    monkeypatch.setenv("DEPLOYSNAKE_TIMEOUTS", json.dumps({"import_s": 1}))
    start = time.monotonic()
    with pytest.raises(UserError) as error:
        load_recipe(WINE, {"model": str(UNTRUSTED / "hangs_at_import.py")})
    assert time.monotonic() - start < 10
    assert (
        f"importing {UNTRUSTED / 'hangs_at_import.py'} did not finish within 1 s (timeouts.import_s)"
        in str(error.value)
    )


def test_plugin_that_exits_at_import_is_an_error_naming_it() -> None:
    from deploysnake.plugins import load_recipe

    with pytest.raises(UserError) as error:
        load_recipe(WINE, {"model": str(UNTRUSTED / "exits_at_import.py")})
    assert f"{UNTRUSTED / 'exits_at_import.py'} exits when imported (sys.exit(0))" in str(
        error.value
    )


def test_training_past_its_time_out_is_stopped(tmp_path: Path) -> None:
    from deploysnake.checkpoint import make_checkpoint_isolated

    settings = validate(
        changed(
            models={
                "slow": {
                    "recipe": str(WINE),
                    "model": str(UNTRUSTED / "slow_train.py"),
                    "params": {"sleep_s": 600},
                }
            }
        )
    )["models"]["slow"]
    start = time.monotonic()
    with pytest.raises(UserError) as error:
        make_checkpoint_isolated(settings, tmp_path / "model.pt", timeout_s=8)
    assert time.monotonic() - start < 60
    assert (
        f"training with {UNTRUSTED / 'slow_train.py'} did not finish within 8 s (timeouts.train_s)"
        in str(error.value)
    )
    assert not (tmp_path / "model.pt").exists()


# ---------------------------------------------------------------- a TorchScript file is code


def _scripted(tmp_path: Path, body: str, name: str) -> Path:
    """A TorchScript file whose forward(x) runs `body` (TorchScript source) and returns x."""
    source = tmp_path / f"{name}_module.py"
    source.write_text(
        "import torch\n\n\nclass M(torch.nn.Module):\n"
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
        f"{body}"
        "        return x * 2\n"
    )
    path = tmp_path / f"{name}.pt"
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import torch; "
            f"from {name}_module import M; torch.jit.script(M()).save({str(path)!r})",
        ],
        check=True,
    )
    return path


def test_torchscript_that_reads_files_is_refused_before_it_runs(tmp_path: Path) -> None:
    from deploysnake.sources import write_description_isolated
    from deploysnake.trust import check_torchscript

    secret = tmp_path / "outside.bin"
    secret.write_bytes(b"\x01\x02\x03\x04")
    path = _scripted(
        tmp_path,
        f"        y = torch.from_file({str(secret)!r}, size=4, dtype=torch.uint8)\n"
        "        x = x + y.sum().float()\n",
        "reads",
    )
    settings = {"torchscript": str(path), "inputs": {"x": {"dtype": "float32", "dims": [4]}}}
    output = tmp_path / "source.json"
    with pytest.raises(UserError) as error:
        write_description_isolated("reads", settings, output, timeout_s=120)
    assert f"{path} reads or writes files when it runs (aten::from_file)" in str(error.value)
    assert "models.reads.allow_file_io: true" in str(error.value)
    assert not output.exists()
    check_torchscript(path, allow_file_io=True, where="models.reads")  # allowed explicitly
    check_torchscript(_scripted(tmp_path, "", "clean"), allow_file_io=False, where="models.clean")


def test_torchscript_graph_scan_finds_the_op_once_loaded(tmp_path: Path) -> None:
    """Beside the serialized code, the loaded graphs (inlined, blocks walked) are scanned."""
    import torch

    from deploysnake.trust import file_io_ops, graph_ops

    path = _scripted(tmp_path, "        torch.save(x, 'elsewhere.pt')\n", "writes")
    assert "aten::save" in graph_ops(torch.jit.load(str(path))) & file_io_ops()


def test_first_run_that_hangs_times_out_naming_the_file(tmp_path: Path) -> None:
    from deploysnake.sources import write_description_isolated

    path = _scripted(
        tmp_path, "        while bool(x.sum() > -1.0):\n            x = x.abs()\n", "hangs"
    )
    settings = {"torchscript": str(path), "inputs": {"x": {"dtype": "float32", "dims": [4]}}}
    start = time.monotonic()
    with pytest.raises(UserError) as error:
        write_description_isolated("hangs", settings, tmp_path / "source.json", timeout_s=15)
    assert time.monotonic() - start < 90
    assert f"the first run of {path} did not finish within 15 s (timeouts.first_run_s)" in str(
        error.value
    )


# ---------------------------------------------------------------- two runs in one folder


def test_owner_record_is_checked_exactly(tmp_path: Path) -> None:
    from deploysnake.processes import OWNER_FILE, claim_workdir, run_state

    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        alive = psutil.Process(sleeper.pid)
        record = {"pid": sleeper.pid, "host": socket.gethostname(), "started": alive.create_time()}
        assert run_state(record) == "alive"
        assert run_state(record | {"started": record["started"] - 100}) == "gone"  # pid reused
        assert run_state(record | {"host": "elsewhere"}) == "unknown"
        (locks / "0.input.lock").write_text("a\n")
        (locks / OWNER_FILE).write_text(json.dumps(record))
        with pytest.raises(UserError, match=f"another run works in .*pid {sleeper.pid}"):
            claim_workdir(tmp_path)
        assert (locks / "0.input.lock").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert run_state(record) == "gone"
    assert "which is gone" in (claim_workdir(tmp_path) or "")
    assert not (locks / "0.input.lock").exists()
    assert json.loads((locks / OWNER_FILE).read_text())["pid"] == os.getpid()
    (locks / OWNER_FILE).unlink()


def test_dry_run_beside_a_real_run_leaves_its_locks(tmp_path: Path) -> None:
    """A real run started as `python -u -m snakemake` (a training that sleeps), then a dry run and a
    second real run in the same folder: the dry run removes nothing, the second run is refused."""
    config = {
        "models": {
            "slow": {
                "recipe": str(WINE),
                "model": str(UNTRUSTED / "slow_train.py"),
                "params": {"sleep_s": 600},
            }
        },
        "formats": ["onnx"],
        "devices": ["cpu"],
    }
    (tmp_path / "slow.yaml").write_text(yaml.safe_dump(config))
    target = "results/checkpoint/slow/model.pt"
    # The target first: --configfile takes every word after it.
    args = [target, "--snakefile", str(ROOT / "Snakefile"), "--configfile", "slow.yaml"]
    log = (tmp_path / "run.log").open("w")
    run = subprocess.Popen(
        [sys.executable, "-u", "-m", "snakemake", "--cores", "1", *args],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    locks = tmp_path / ".snakemake" / "locks"
    try:
        deadline = time.monotonic() + 180
        while not (locks / "0.output.lock").exists():
            assert run.poll() is None, (tmp_path / "run.log").read_text()
            assert time.monotonic() < deadline, "the run took no lock"
            time.sleep(0.5)
        held = sorted(p.name for p in locks.iterdir())
        dry = snakemake(target, "-n", "--configfile", "slow.yaml", cwd=tmp_path, check=False)
        assert dry.returncode == 0, dry.stderr
        assert "removed" not in dry.stdout + dry.stderr
        second = snakemake(
            target, "--cores", "1", "--configfile", "slow.yaml", cwd=tmp_path, check=False
        )
        assert second.returncode != 0
        assert (
            f"another run works in {tmp_path.resolve()}: Snakemake pid {run.pid}" in second.stderr
        )
        assert run.poll() is None
        assert sorted(p.name for p in locks.iterdir()) == held
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGTERM)
        try:
            run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        log.close()
    assert not (tmp_path / target).exists()


# ---------------------------------------------------------------- a cluster run that cannot start


def test_a_request_no_node_meets_names_the_rule_the_figure_and_the_fix() -> None:
    """The decision on sinfo's real output format; tests/test_slurm.py runs it on a real SLURM."""
    from deploysnake.devices import Request, parse_nodes, request_problems

    nodes = parse_nodes(
        "n1|debug*|2|7800|(null)\nn1|big|2|7800|(null)\nn2|big|16|64000+|gpu:a100:4(S:0-1)\n"
    )
    assert [(n.cpus, n.memory_mb, n.gpus) for n in nodes] == [
        (2, 7800, {}),
        (2, 7800, {}),
        (16, 64000, {"a100": 4}),
    ]
    problems = request_problems(
        [
            Request("perf_analyzer_offline", 8, 8000),
            Request("perf_analyzer_offline", 8, 8000),
            Request("torch_train", 1, 4000),
            Request("tritonclient_accuracy", 1, 9000),
            Request("runtime_native_baseline", 8, 8000, "big"),
            Request("perf_analyzer_online", 1, 100, "gpu"),
            Request("runtime_collect_environment", 1, 100, "big", gpus=1, gpu_model="a100"),
            Request("tritonclient_accuracy_gpu", 1, 100, "big", gpus=1, gpu_model="h100"),
        ],
        nodes,
    )
    assert problems == [
        "rule perf_analyzer_offline asks for 8 CPUs a job, but no node of the default partition "
        "has more than 2; its jobs would stay pending forever. Pass --max-threads 2 (the cores "
        "of a measuring job), or --set-threads perf_analyzer_offline=2",
        "rule perf_analyzer_online goes to partition gpu, which has no nodes (sinfo); set "
        "slurm_partition in the profile's default-resources to a partition of this cluster",
        "rule tritonclient_accuracy asks for 9000 MB of memory a job (mem_mb), but no node of the "
        "default partition has more than 7800 MB; its jobs would stay pending forever. Pass "
        "--set-resources tritonclient_accuracy:mem_mb=7800 (or lower mem_mb in the profile's "
        "default-resources)",
        "rule tritonclient_accuracy_gpu asks for 1 x gpu:h100 a job, but no node of partition big "
        "has that (their GPUs: a100:4); its jobs would stay pending forever. Measure on a device "
        "this partition has (config devices), or send the rule elsewhere: --set-resources "
        "tritonclient_accuracy_gpu:slurm_partition=<partition>",
    ]
