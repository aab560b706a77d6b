#!/usr/bin/env bash
# The paper's effect in miniature, on the CPU: the verifiable rule world (tasks/rules) end to end.
#   1. student   a random tiny Llama with a tokenizer trained on rule-world text (harness models rules)
#   2. data      the rule teacher writes D(1,2,3) on training skills and topics (harness generate-data)
#   3. train     DeepSpeed fine-tuning through bin/train.sh (trainers/configs/rules_cpu.yaml)
#   4. evaluate  base and fine-tuned students on skillmix-rules-k{1..5}-{train,heldout}, graded
#                exactly by the rule judge: base against fine-tuned per k and split, 95% CIs
#   5. judge     the embedded tiny model judge grades the first combinations of the same answers
#                too, and harness agreement measures it against the rule judge (the truth)
# About 15 minutes on 2 idle cores once set up. Re-running skips finished stages (a killed stage
# resumes: train.sh from its newest checkpoint, harness from its run store); each stage prints its
# wall and CPU seconds. The open-catalog pipeline (teacher and judge models) is bin/pipeline_open.sh.
#
#   bin/pipeline.sh                                  # runs/rules
#   OUT=runs/rules-long STEPS=1000 COMBINATIONS=100 JUDGE_COMBINATIONS=20 bin/pipeline.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${VIRTUAL_ENV:-}" ]]; then
    bin/setup.sh
    # shellcheck disable=SC1091
    source .venv/bin/activate
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
harness() { python -m harness "$@"; }

OUT=${OUT:-runs/rules}
PER_K=${PER_K:-700}                 # training combinations per k; each gets 3 rule-teacher texts
STEPS=${STEPS:-500}                 # optimizer steps of 32 rows (see README: 300 was too few)
COMBINATIONS=${COMBINATIONS:-40}    # evaluation combinations per task (x 3 generation rounds)
JUDGE_COMBINATIONS=${JUDGE_COMBINATIONS:-5}  # of those, graded by the tiny judge too (x 3 grading runs)
CONFIG=${CONFIG:-trainers/configs/rules_cpu.yaml}
BASE=$OUT/models/base
JUDGE=$OUT/models/tiny-judge

stage_file=$(mktemp)
trap 'rm -f "$stage_file"' EXIT
cpu_now() {  # CPU=user + system seconds of this shell's finished children so far
    times > "$stage_file"  # in this shell: `times` in a $(...) subshell would count only the subshell's children
    CPU=$(tail -n 1 "$stage_file" | awk '{ total = 0; for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); total += t[1] * 60 + t[2] } print total }')
}
stage() {  # stage N NAME DONE_FILE COMMAND...: run COMMAND unless DONE_FILE exists; print the time taken
    local number=$1 name=$2 done_file=$3
    shift 3
    if [[ -n $done_file && -e $done_file ]]; then
        echo "== $number/5 $name: done already ($done_file)" >&2
        return
    fi
    echo "== $number/5 $name" >&2
    local wall=$EPOCHREALTIME cpu
    cpu_now
    cpu=$CPU
    "$@"
    cpu_now
    awk -v n="$number" -v name="$name" -v w0="$wall" -v w1="$EPOCHREALTIME" -v c0="$cpu" -v c1="$CPU" \
        'BEGIN { printf "== %s/5 %s: %.0f s wall, %.0f s CPU\n", n, name, w1 - w0, c1 - c0 }' | tee -a "$OUT/timings.txt" >&2
}

students() {
    harness models rules "$BASE" --overwrite
    # the embedded default judge's shape and seed (harness.core.connect.DEFAULT_SEEDS), in the run's folder
    harness models tiny "$JUDGE" --seed 2 --overwrite
}
TASKS=(skillmix-rules-k{1,2,3,4,5}-train skillmix-rules-k{1,2,3,4,5}-heldout)
STUDENTS=(--student base="$BASE" --student ft="$OUT/train/final")
evaluate() {
    harness run "${TASKS[@]}" "${STUDENTS[@]}" --judge rules --combinations "$COMBINATIONS" --out "$OUT/eval"
}
measure_judge() {
    # The first JUDGE_COMBINATIONS combinations of the same tasks: the students' answers come from
    # the response cache (the same requests as in OUT/eval), so the tiny judge grades answers that
    # the rule judge graded there. One ask per grading run: a reply cut off is unscored, not retried.
    harness run "${TASKS[@]}" "${STUDENTS[@]}" --judge rules --judge tiny="$JUDGE" --constrained-judges \
        --max-grade-attempts 1 --combinations "$JUDGE_COMBINATIONS" --out "$OUT/judges"
    harness agreement "$OUT/judges"
}

mkdir -p "$OUT"
echo "== pipeline.sh $(date -u +%FT%TZ) OUT=$OUT PER_K=$PER_K STEPS=$STEPS COMBINATIONS=$COMBINATIONS" \
    "JUDGE_COMBINATIONS=$JUDGE_COMBINATIONS; load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/timings.txt" >&2
started=$EPOCHREALTIME
stage 1 "students: rule-world base model and the tiny judge" "$JUDGE/config.json" students
stage 2 "training data: rule teacher, D(1,2,3) on training skills" "$OUT/data/dataset/provenance.json" \
    harness generate-data --teacher rules --k 1,2,3 --per-k "$PER_K" --out "$OUT/data"
stage 3 "fine-tuning with DeepSpeed (bin/train.sh $CONFIG)" "$OUT/train/final/model.safetensors" \
    bin/train.sh "$CONFIG" model.path="$BASE" data.path="$OUT/data/dataset" output_dir="$OUT/train" train.steps="$STEPS"
stage 4 "evaluation: base and fine-tuned, k = 1..5, training and held-out skills, rule judge" "" evaluate
stage 5 "the tiny model judge measured against the truth (the rule judge)" "" measure_judge
awk -v w0="$started" -v w1="$EPOCHREALTIME" 'BEGIN { printf "== pipeline.sh: %.0f s wall in all\n", w1 - w0 }' \
    | tee -a "$OUT/timings.txt" >&2
