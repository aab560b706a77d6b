#!/usr/bin/env bash
# The paper's pipeline end to end on the open catalog: training data from a teacher, DeepSpeed
# fine-tuning, and SKILL-MIX evaluation of the base and fine-tuned students on training and
# held-out skills. With no settings it runs on the embedded tiny random models on the CPU (a few
# minutes, a smoke run: random models measure noise); point TEACHER, JUDGE, BASE and CONFIG at
# real models to run the experiment. (bin/pipeline.sh runs the verifiable rule world instead.)
#
#   bin/pipeline_open.sh                  # tiny models, runs/pipeline
#   TASKS="skillmix-k2-train skillmix-k2-heldout" bin/pipeline_open.sh   # evaluate on these tasks only
#   CONSTRAINED=1 bin/pipeline_open.sh    # vLLM judges reply in the rubric's format (not for openai: judges)
#   OUT=runs/mistral TEACHER=openai:gpt-4o JUDGE=gpt-4o BASE=/models/Mistral-7B-Instruct-v0.2 \
#     CONFIG=trainers/configs/mistral-7b-instruct-v0.2_full.yaml PER_K=2000 COMBINATIONS=100 STEPS=4000 bin/pipeline_open.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin/setup.sh
harness=.venv/bin/harness

OUT=${OUT:-runs/pipeline}
PER_K=${PER_K:-20}                  # combinations per k for the training data
COMBINATIONS=${COMBINATIONS:-20}    # combinations per evaluation task
STEPS=${STEPS:-20}
TASKS=${TASKS:-skillmix-k2-train skillmix-k3-train skillmix-k2-heldout skillmix-k3-heldout}  # evaluation tasks
MIN_POINTS=${MIN_POINTS:-0.6}       # tiny random models rarely earn full marks; real runs use 1.0
CONFIG=${CONFIG:-trainers/configs/tiny_cpu.yaml}
BASE=${BASE:-$OUT/models/base}
teacher=(); [[ -n "${TEACHER:-}" ]] && teacher=(--teacher "$TEACHER")
judge=(); [[ -n "${JUDGE:-}" ]] && judge=(--judge "$JUDGE")
[[ ${CONSTRAINED:-0} == 1 ]] && judge+=(--constrained-judges)
read -ra tasks <<< "$TASKS"

if [[ $BASE == "$OUT/models/base" && ! -f $BASE/config.json ]]; then
    "$harness" models tiny "$BASE" --seed 1
fi
echo "== 1/3 training data (k = 1, 2, 3)" >&2
"$harness" generate-data "${teacher[@]}" "${judge[@]}" --k 1,2,3 --per-k "$PER_K" --min-points "$MIN_POINTS" --out "$OUT/data"
echo "== 2/3 fine-tuning on D(1,2,3)" >&2
bin/train.sh "$CONFIG" model.path="$BASE" data.path="$OUT/data/dataset" output_dir="$OUT/train" train.steps="$STEPS"
echo "== 3/3 evaluation: base and fine-tuned students, training and held-out skills" >&2
"$harness" run "${tasks[@]}" \
    --student base="$BASE" --student ft="$OUT/train/final" "${judge[@]}" \
    --combinations "$COMBINATIONS" --out "$OUT/eval"
