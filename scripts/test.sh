#!/usr/bin/env bash
# Quick start, command 2: set everything up (with the dev tools and Chromium for the report test),
# then run the linters and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
# Chromium is only needed by the HTML-report test; a failed install makes that test skip, with a reason.
if ! command -v chromium >/dev/null 2>&1; then
  (export DEBIAN_FRONTEND=noninteractive; SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo;
    $SUDO apt-get install -y -qq chromium >/dev/null 2>&1 ||
    { $SUDO apt-get update -qq >/dev/null 2>&1 && $SUDO apt-get install -y -qq chromium >/dev/null 2>&1; }) ||
    echo "test: could not install chromium; the report browser test will be skipped"
fi
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/mypy
exec .venv/bin/python -m pytest -n 2 -q "$@"
