#!/usr/bin/env bash
# Set up (or bring up to date) the project's .venv; idempotent, safe to run before every command.
#   scripts/setup.sh          the workflow's packages, perf_analyzer, libb64 (apt, when root)
#   scripts/setup.sh test     also the test and tf extras and Debian's chromium (for the report test)
set -euo pipefail
cd "$(dirname "$0")/.."
WANT=${1:-run}
PYTHON=${PYTHON:-python3.11}
VENV=.venv
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

apt_install() {  # apt_install PKG...: install Debian packages when root, else say what to run
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
    else
        echo "setup: missing Debian packages: $*; run: sudo apt-get install $*" >&2
        return 1
    fi
}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"

# pip only when pyproject.toml changed since the last install (the stamp holds its hash).
# test: the test extras and the tf extra (the suite runs a Keras recipe too).
extras=$([ "$WANT" = test ] && echo "[test,tf]" || echo "")
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)${extras:+-test}"
if [ ! -f "$stamp" ]; then
    "$VENV/bin/pip" install -q -e ".$extras"
    rm -f "$VENV"/.installed-*
    touch "$stamp"
fi

# deploysnake's in-process Triton backend (src/deploysnake/inprocess.py): C, built against this Python.
command -v cc >/dev/null || command -v gcc >/dev/null || apt_install gcc libc6-dev
"$VENV/bin/python" -m deploysnake.inprocess

# perf_analyzer: PyPI's perf-analyzer wheel needs glibc >= 2.38; the binary inside the tritonclient
# 2.51.0 manylinux1 wheel runs on older systems with libb64 and libcudart.so.12 (from the
# nvidia-cuda-runtime-cu12 wheel) on its library path. A wrapper in .venv/bin sets that path.
ldconfig -p | grep -q 'libb64.so.0d' || apt_install libb64-0d
PA_DIR="$VENV/libexec/perf_analyzer"
if [ ! -x "$PA_DIR/perf_analyzer" ]; then
    tmp=$(mktemp -d)
    "$VENV/bin/pip" download -q --no-deps --only-binary=:all: --platform manylinux1_x86_64 \
        --python-version 3.11 -d "$tmp" tritonclient==2.51.0
    mkdir -p "$PA_DIR"
    "$VENV/bin/python" - "$tmp"/tritonclient-2.51.0-*.whl "$PA_DIR/perf_analyzer" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open("tritonclient-2.51.0.data/data/bin/perf_analyzer") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    chmod +x "$PA_DIR/perf_analyzer"
    rm -rf "$tmp"
fi
cudart=$("$VENV/bin/python" -c 'import nvidia.cuda_runtime, os; print(os.path.join(list(nvidia.cuda_runtime.__path__)[0], "lib"))')
cat > "$VENV/bin/perf_analyzer" <<WRAP
#!/bin/sh
# Written by scripts/setup.sh: perf_analyzer 2.51 with its libraries.
LD_LIBRARY_PATH="$cudart\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$(pwd)/$PA_DIR/perf_analyzer" "\$@"
WRAP
chmod +x "$VENV/bin/perf_analyzer"

if [ "$WANT" = test ]; then
    command -v chromium >/dev/null || apt_install chromium
    # The slurm extra, apart from the venv (see pyproject.toml): the SLURM test puts it on PYTHONPATH.
    plugin_stamp=".venv/slurm-plugin/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ ! -f "$plugin_stamp" ]; then
        rm -rf .venv/slurm-plugin
        "$VENV/bin/python" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["slurm"]))' \
            | xargs "$VENV/bin/pip" install -q --no-deps --target .venv/slurm-plugin
        touch "$plugin_stamp"
    fi
fi
echo "setup: $VENV ready ($("$VENV/bin/python" --version), perf_analyzer at $VENV/bin/perf_analyzer)"
