#!/usr/bin/env bash
# Sets up everything cnnlab needs on a fresh Debian machine (run as root or with sudo):
#   - Debian's dataset-fashion-mnist package (the real Fashion-MNIST files, read offline),
#   - a virtual environment in .venv with the CPU build of PyTorch and cnnlab installed editable.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."

want_dev=0
[ "${1:-}" = "--dev" ] && want_dev=1

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

apt_install() {  # apt_install PACKAGE...: installs what is missing, updating the lists once if needed
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; }
}

apt_install dataset-fashion-mnist

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
VPY=.venv/bin/python
extras="all"
[ $want_dev = 1 ] && extras="all,dev"
stamp=".venv/.cnnlab-setup-$extras-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing torch (CPU build) and cnnlab[$extras] into .venv"
  $VPY -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v WARNING || true
  # The CPU build first, so that the project's 'torch>=2.3' is already satisfied (a bare 'torch'
  # would pull a multi-GB CUDA build). Where pip's own configuration offers the CPU wheel (this
  # project's machines: 2.13.0+cpu from a local wheel cache) pip takes it; elsewhere PyPI's Linux
  # wheel of torch==2.13.0 is the CUDA build. So pip is asked first which build it would pick (a dry
  # run reads metadata, not the wheel) and, when that is not a +cpu build, PyTorch's CPU index is used.
  picked=$($VPY -m pip install -q --disable-pip-version-check --dry-run --ignore-installed --report - \
      "torch==2.13.0" 2>/dev/null | $VPY -c "import json, sys
print(next(i['metadata']['version'] for i in json.load(sys.stdin)['install'] if i['metadata']['name'] == 'torch'))" \
      2>/dev/null) || picked=""  # the dry run failed (offline?): the install below says why
  torch_index=()
  case "$picked" in
    "" | *+cpu) ;;
    *) echo "setup: pip would install torch $picked (a CUDA build); using https://download.pytorch.org/whl/cpu"
       torch_index=(--index-url https://download.pytorch.org/whl/cpu) ;;
  esac
  $VPY -m pip install -q --disable-pip-version-check ${torch_index[@]+"${torch_index[@]}"} "torch==2.13.0" 2>&1 |
    grep -v WARNING || true
  $VPY -m pip install -q --disable-pip-version-check -e ".[$extras]" 2>&1 | grep -v WARNING || true
  $VPY -c "import torch, cnnlab; print('setup: torch', torch.__version__, '| cnnlab', cnnlab.__version__)"
  touch "$stamp"
fi
