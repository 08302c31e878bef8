#!/usr/bin/env bash
# Quick start, command 1: set everything up, then run cnnlab's main job: train the default model
# on the real Fashion-MNIST (metrics, checkpoint and an HTML report land in runs/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/cnnlab train "$@"
