#!/usr/bin/env bash
# Measure `harness run` against the ceiling of the same vLLM servers and a one-at-a-time loop.
#
#   bin/bench.sh [TASK] [harness bench options]
#   bin/bench.sh                                  # skillmix-k2-train at its own size (100 combinations), the tiny models
#   bin/bench.sh skillmix-k2-train --combinations 40 --repeats 3 --out runs/bench
#
# Serves the models once, then prints wall time, requests/s and tokens/s of (a) `harness run`,
# (b) the same requests all at once and (c) one at a time, then harness/ceiling and
# sequential/harness; all figures go to OUT/bench.json. `harness bench --help` lists the options.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${VIRTUAL_ENV:-}" && -f "$ROOT/.venv/bin/activate" ]]; then
    # shellcheck disable=SC1091
    source "$ROOT/.venv/bin/activate"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec python -m harness bench "$@"
