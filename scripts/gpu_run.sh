#!/usr/bin/env bash
# One bounded GPU session: the full evaluation of each MODEL on the shared validation images, in turn,
# within TOTAL_SECONDS; every run is resumable (--resume), so a cut run goes on later on any device.
# Usage: scripts/gpu_run.sh ANNOTATIONS_JSON OUT_DIR TOTAL_SECONDS MODEL [MODEL ...]
#   e.g. scripts/gpu_run.sh ../shared/data/ilsvrc2012-val/annotations.json gpu-out 560 efficientnet_lite0
# Runs from a source checkout without installing: PYTHONPATH=src (plus a folder with the weight packages);
# MobileNetV1 needs MICAM_MOBILENET_V1_WEIGHTS. A model with a committed run (docs/results/<model>) starts
# from it, so only the images it lacks are evaluated; the evaluator checks that settings and data match.
# An H100 did 872 EfficientNet-Lite0 images in 308 s and 1,000 MobileNetV1 images in 274 s.
# EVALUATE_ARGS adds arguments to each evaluate, e.g. EVALUATE_ARGS="--methods all --metrics default" extends
# a committed run with the controls and metrics it lacks (its rows kept byte for byte, the new columns in
# per_image_added.csv), as docs/results.md asks for the stated-protocol runs.
# PROTOCOL=authors runs the authors'-protocol evaluation instead (seeded from docs/results/authors/<model>,
# written to OUT_DIR/eval-authors-<model>, made as the committed ones were: no counterfactual analysis
# or sanity check), e.g. to take those runs from their first 300 images to all 1,000 on a GPU.
set -uo pipefail
[ $# -ge 4 ] || { awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 2; }
DATA="$1"; OUT_DIR="$2"; TOTAL="$3"; shift 3
case "${PROTOCOL:-stated}" in
    stated) RESULTS=results; PREFIX=eval; PROTOCOL_ARGS=(--counterfactual-images 50 --sanity-images 4) ;;
    authors) RESULTS=results/authors; PREFIX=eval-authors
        PROTOCOL_ARGS=(--protocol authors --counterfactual-images 0 --sanity-images 0) ;;
    *) echo "PROTOCOL must be stated or authors, not '${PROTOCOL}'"; exit 2 ;;
esac

START=$(date +%s)
left() { echo $(( TOTAL - ( $(date +%s) - START ) )); }
PY="${PYTHON:-python3}"
mkdir -p "$OUT_DIR"
nvidia-smi -L 2>&1 | tee "$OUT_DIR/device.txt"
"$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, \
torch.cuda.get_device_name(0))" 2>&1 | tee -a "$OUT_DIR/device.txt"

for model in "$@"; do
    seed_dir="$(dirname "$0")/../docs/$RESULTS/$model"
    run_dir="$OUT_DIR/$PREFIX-$model"
    if [ ! -e "$run_dir/per_image.csv" ] && [ -f "$seed_dir/per_image.csv" ]; then
        # without its curves a resumed run would average the curves of its new images only
        [ -f "$seed_dir/curves.csv.gz" ] || { echo "stopping: $seed_dir has no curves.csv.gz"; exit 3; }
        mkdir -p "$run_dir"
        for name in per_image.csv counterfactual.csv sanity.csv skipped.csv per_image_added.csv settings.json results.json; do
            [ -f "$seed_dir/$name" ] && cp "$seed_dir/$name" "$run_dir/"
        done
        gunzip -c "$seed_dir/curves.csv.gz" > "$run_dir/curves.csv"
        echo "$model resumes the committed run: $(( $(wc -l < "$seed_dir/per_image.csv") - 1 )) rows"
    fi
    budget=$(( $(left) - 10 ))
    [ "$budget" -gt 20 ] || { echo "no time left for $model"; continue; }
    echo "== evaluate $model (budget ${budget} s)"
    timeout -k 15 --signal=INT "$budget" "$PY" -m micam.cli.main evaluate --data "$DATA" --model "$model" \
        --out "$run_dir" --device cuda --batch-size 32 --score-cam-batch-size 1280 \
        "${PROTOCOL_ARGS[@]}" --resume ${EVALUATE_ARGS:-}
    status=$?
    echo "evaluate $model: exit status $status after $(( $(date +%s) - START )) s"
    case $status in 0|1|124|130|137) ;; *) echo "stopping: evaluate failed"; exit 3 ;; esac
done
echo "== done in $(( $(date +%s) - START )) s"
