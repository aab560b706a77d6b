#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, real vLLM and DeepSpeed runs included.
# With arguments, they go to one pytest run as they are (bin/test.sh -m "not integration" -k store).
set -euo pipefail
cd "$(dirname "$0")/.."
bin/setup.sh
pytest=(.venv/bin/python -m pytest)
if [[ $# -gt 0 ]]; then
    exec "${pytest[@]}" "$@"
fi
# The fast tests spread over every core; then the integration tests one at a time, since each
# starts real vLLM servers or DeepSpeed runs that size themselves to the whole machine; pytest
# then lists the ten slowest, which is where the suite's time goes.
"${pytest[@]}" -m "not integration" -n auto
exec "${pytest[@]}" -m integration --durations=10
