#!/usr/bin/env bash
# Create (if missing) a Python virtual environment with torch + numpy for the
# PyTorch CPU throughput baseline (scripts/pytorch_throughput.py).
#
#   VENV    venv location relative to the repo root (default: .venv-bench)
#   PYTHON  interpreter used to create the venv (default: python3)
#
# Progress goes to stderr; the last stdout line is the venv's python path.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"
VENV="${VENV:-.venv-bench}"
PYTHON="${PYTHON:-python3}"
VENV_PY="$REPO_ROOT/$VENV/bin/python"

log() { echo "pytorch-venv: $*" >&2; }

if [[ -x "$VENV_PY" ]] && "$VENV_PY" -c 'import torch, numpy' >/dev/null 2>&1; then
    log "torch $("$VENV_PY" -c 'import torch; print(torch.__version__)') already installed in $VENV"
    echo "$VENV_PY"
    exit 0
fi

if [[ ! -x "$VENV_PY" ]]; then
    # `python3 -m venv` needs ensurepip, which Debian ships in python3-venv.
    if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1 \
            && ! dpkg -s python3-venv >/dev/null 2>&1; then
            log "installing python3-venv with apt-get"
            apt-get update >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >&2
        else
            log "warning: $PYTHON lacks venv/ensurepip; install python3-venv"
        fi
    fi
    log "creating virtual environment at $VENV"
    "$PYTHON" -m venv "$VENV" >&2
fi

log "installing torch and numpy from PyPI (may take several minutes)"
"$VENV_PY" -m pip install --upgrade pip >&2
"$VENV_PY" -m pip install torch numpy >&2
"$VENV_PY" -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__)' >&2

echo "$VENV_PY"
