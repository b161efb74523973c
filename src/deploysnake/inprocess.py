"""deploysnake's in-process Triton backend: build it, find it, and the environment the server needs.

The bundled tritonserver has only Triton's python backend, whose model runs in a stub process: each
batch crosses shared memory to the stub and back. backend/triton_deploysnake.c embeds this Python in
the server process instead and runs the model's runtime on the server's execute thread. It is built
once, by scripts/setup.sh (`python -m deploysnake.inprocess`), with the C compiler and this Python's
headers; where it is not built, the bundled server keeps the python backend.
"""

from __future__ import annotations

import logging
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

BACKEND = "deploysnake"
SOURCE = Path(__file__).with_name("backend") / "triton_deploysnake.c"
RUNNER = Path(__file__).with_name("backend") / "deploysnake_model.py"
# In the environment's prefix, so each venv (or conda env) has the one built for its Python.
LIBRARY = Path(sys.prefix) / "lib" / "deploysnake-backend" / BACKEND / f"libtriton_{BACKEND}.so"


def built() -> Path | None:
    """The backend library, if it is built. A running workflow keeps using it even when the source
    is edited meanwhile (every job serves with the runner it was planned with); setup rebuilds it."""
    return LIBRARY if LIBRARY.is_file() else None


def stale() -> bool:
    return built() is None or LIBRARY.stat().st_mtime < SOURCE.stat().st_mtime


def build(compiler: str | None = None) -> Path:
    """Compile the backend against this Python's libpython; written atomically (parallel jobs)."""
    compiler = compiler or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise RuntimeError(
            "no C compiler (cc or gcc) on PATH: install one (Debian: apt-get install gcc) to "
            "build the in-process backend"
        )
    include = sysconfig.get_paths()["include"]
    libdir = sysconfig.get_config_var("LIBDIR")
    libpython = sysconfig.get_config_var(
        "LDLIBRARY"
    )  # libpython3.11.so where Python was built shared
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not (Path(libdir) / libpython).exists():
        raise RuntimeError(
            f"{sys.executable} was built without a shared libpython ({libdir}/{libpython}); the "
            "in-process backend needs one"
        )
    LIBRARY.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=LIBRARY.parent, suffix=".so", delete=False) as tmp:
        target = Path(tmp.name)
    command = [
        compiler,
        "-O2",
        "-shared",
        "-fPIC",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        f"-I{include}",
        str(SOURCE),
        "-o",
        str(target),
        f"-L{libdir}",
        f"-l{libpython.removeprefix('lib').split('.so')[0]}",
        f"-Wl,-rpath,{libdir}",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        target.unlink(missing_ok=True)
        raise RuntimeError(f"building {SOURCE.name} failed ({' '.join(command)}):\n{result.stderr}")
    os.replace(target, LIBRARY)
    return LIBRARY


def server_env() -> dict[str, str]:
    """What the embedded interpreter needs: this Python's home and this environment's packages."""
    paths = [*site.getsitepackages(), os.environ.get("PYTHONPATH", "")]
    return {
        "PYTHONHOME": sys.base_prefix,
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        "PYTHONNOUSERSITE": "1",
    }


if __name__ == "__main__":
    print(f"built {build()}" if stale() else f"up to date: {LIBRARY}")
