#!/usr/bin/env bash
# One bounded GPU session: the full evaluation of MobileNetV2 on the 1,000 shared validation images,
# then EfficientNet-Lite0's with the time left; both resumable (--resume), so a cut run can go on later.
# Usage: scripts/gpu_run.sh ANNOTATIONS_JSON OUT_DIR TOTAL_SECONDS [SECONDS_KEPT_FOR_THE_SECOND_MODEL]
# Runs from a source checkout without installing: PYTHONPATH=src (plus a folder with the weight packages).
# A new OUT_DIR starts each model from its committed run (docs/results/<model>), so only the
# images it lacks are evaluated; the evaluator checks that settings and data match.
set -uo pipefail
DATA="$1"; OUT_DIR="$2"; TOTAL="${3:-560}"; SECOND="${4:-120}"
START=$(date +%s)
left() { echo $(( TOTAL - ( $(date +%s) - START ) )); }
PY="${PYTHON:-python3}"
mkdir -p "$OUT_DIR"
seed() {  # MODEL: a new OUT_DIR starts from the committed run of MODEL, if there is one
    local seed_dir; seed_dir="$(dirname "$0")/../docs/results/$1"
    if [ ! -e "$OUT_DIR/eval-$1/per_image.csv" ] && [ -f "$seed_dir/per_image.csv" ]; then
        mkdir -p "$OUT_DIR/eval-$1"
        cp "$seed_dir"/{per_image,counterfactual,sanity,skipped}.csv "$seed_dir"/{settings,results}.json "$OUT_DIR/eval-$1/"
        gunzip -c "$seed_dir/curves.csv.gz" > "$OUT_DIR/eval-$1/curves.csv"
        echo "$1 resumes the committed run: $(( $(wc -l < "$seed_dir/per_image.csv") - 1 )) rows"
    fi
}
seed mobilenet_v2
seed efficientnet_lite0
nvidia-smi -L 2>&1 | tee "$OUT_DIR/device.txt"
"$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, \
torch.cuda.get_device_name(0))" 2>&1 | tee -a "$OUT_DIR/device.txt"

evaluate() {  # MODEL BUDGET_SECONDS [extra args]; returns evaluate's status (124/130 = cut by the budget)
    local model="$1" budget="$2"; shift 2
    [ "$budget" -gt 20 ] || { echo "no time left for $model"; return 0; }
    echo "== evaluate $model (budget ${budget} s)"
    timeout -k 15 --signal=INT "$budget" "$PY" -m micam.cli.main evaluate --data "$DATA" --model "$model" \
        --out "$OUT_DIR/eval-$model" --device cuda --batch-size 32 --resume "$@"
    local status=$?
    echo "evaluate $model: exit status $status after $(( $(date +%s) - START )) s"
    return $status
}

evaluate mobilenet_v2 $(( $(left) - SECOND )) --score-cam-batch-size 1280
status=$?
case $status in 0|1|124|130|137) ;; *) echo "stopping: evaluate failed"; exit 3 ;; esac
evaluate efficientnet_lite0 $(( $(left) - 10 )) --score-cam-batch-size 1280 --counterfactual-images 50 --sanity-images 4
echo "== done in $(( $(date +%s) - START )) s"
