#!/usr/bin/env bash
# Fine-tune with the DeepSpeed SFT recipe (trainers/sft.py).
#
#   bin/train.sh CONFIG [key=value ...]
#   bin/train.sh trainers/configs/tiny_cpu.yaml train.steps=40 data.path=runs/data/skillmix/dataset
#
# Where it runs:
#   GPUs on this machine   all of them (nvidia-smi), or NUM_GPUS=N, or CUDA_VISIBLE_DEVICES
#   several nodes          HOSTFILE=path (DeepSpeed hostfile: "host slots=N" per line); the repo and its
#                          .venv must be at the same path on every node, reachable by passwordless ssh
#   no GPU                 the CPU: DS_ACCELERATOR=cpu, fp32, one process or NUM_PROCS=N
#                          (setting DS_ACCELERATOR=cpu yourself forces the CPU on a GPU machine)
# Extra launcher flags go in DS_LAUNCHER_ARGS, e.g. DS_LAUNCHER_ARGS="--master_port 29600".
# Rank 0 shows a progress bar with the loss and logs every step to OUTPUT/train_log.jsonl and
# OUTPUT/tensorboard (and W&B with logging.wandb=true); OUTPUT/train_report.png plots loss and lr.
# model.path=builtin:tiny and data.path=builtin:demo are built locally on first use (trainers/builtin.py).
# Running the same command again resumes from OUTPUT's newest checkpoint.
set -euo pipefail

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    [[ $# -ge 1 ]] && exit 0 || exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${VIRTUAL_ENV:-}" && -f "$ROOT/.venv/bin/activate" ]]; then
    # shellcheck disable=SC1091
    source "$ROOT/.venv/bin/activate"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# Check the config and paths first (and build builtin: ones): a typo should cost a second, not the
# launcher's start-up.
python -m trainers.config "$@"

launcher=(deepspeed --no_local_rank)
if [[ -n "${HOSTFILE:-}" ]]; then
    [[ -f "$HOSTFILE" ]] || { echo "error: HOSTFILE=$HOSTFILE does not exist" >&2; exit 2; }
    launcher+=(--hostfile "$HOSTFILE")
    where="nodes in $HOSTFILE"
elif [[ "${DS_ACCELERATOR:-}" != cpu ]] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    if [[ -n "${NUM_GPUS:-}" ]]; then
        launcher+=(--num_gpus "$NUM_GPUS")
        where="$NUM_GPUS GPU(s)"
    elif [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
        where="GPUs $CUDA_VISIBLE_DEVICES"  # the launcher turns this into --include itself
    else
        count="$(nvidia-smi -L | grep -c '^GPU')"
        launcher+=(--num_gpus "$count")
        where="$count GPU(s)"
    fi
else
    export DS_ACCELERATOR=cpu
    # one rank unless NUM_PROCS says otherwise (several CPU ranks exercise ZeRO partitioning)
    launcher+=(--num_gpus "${NUM_PROCS:-1}")
    where="the CPU (${NUM_PROCS:-1} process(es))"
fi
# shellcheck disable=SC2206
launcher+=(${DS_LAUNCHER_ARGS:-})

echo "train.sh: training on $where" >&2
exec "${launcher[@]}" --module trainers.sft "$@"
