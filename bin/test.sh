#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, real vLLM and DeepSpeed runs included.
set -euo pipefail
cd "$(dirname "$0")/.."
bin/setup.sh
exec .venv/bin/python -m pytest "$@"
