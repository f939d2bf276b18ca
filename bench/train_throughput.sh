#!/usr/bin/env bash
# Training throughput of DeeperLab with the wider MobileNetV2 backbone at 513x513, batch 2, on one
# device: `deeperlab train` (full steps: data, targets, loss, backward, SGD), `deeperlab bench
# --mode train` (forward + backward only) and PyTorch (bench/torch_train.py, same network), one
# after the other in the same run; prints a markdown table for docs/PERF.md.
#
#   bench/train_throughput.sh [cpu|cuda] [BUILD_DIR=build] [WORK_DIR=a new temporary folder]
#
# Environment: DEEPERLAB_THREADS (CPU threads, default 2 on cpu and all cores on cuda),
# DEEPERLAB_TRAIN_STEPS (default 5 on cpu, 30 on cuda), DEEPERLAB_PYTHON (the interpreter with
# torch, default /usr/bin/python3, or python3 when that has no torch). Both sides run with the caller's
# OpenMP settings: OMP_WAIT_POLICY=passive, good for us on a shared machine, slows PyTorch's
# OpenMP pool by about a third on a quiet one, so it is not set here.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=${1:-cpu}
BUILD=${2:-build}
WORK=${3:-$(mktemp -d)}
case "$DEV" in cpu | cuda) ;; *) echo "device must be cpu or cuda, got '$DEV'" >&2; exit 2 ;; esac
if [ "$DEV" = cpu ]; then
  THREADS=${DEEPERLAB_THREADS:-2}; STEPS=${DEEPERLAB_TRAIN_STEPS:-5}
else
  THREADS=${DEEPERLAB_THREADS:-0}; STEPS=${DEEPERLAB_TRAIN_STEPS:-30}
fi
PY=${DEEPERLAB_PYTHON:-/usr/bin/python3}
"$PY" -c "import torch" 2>/dev/null || PY=python3
mkdir -p "$WORK"
CFG=$WORK/perf_mnv2.json

echo "== dataset and config in $WORK" >&2
[ -f "$WORK/data/train.json" ] || "$BUILD/deeperlab" synth --out "$WORK/data" --train 8 --val 1 --size 513x513 >&2
"$PY" - "$CFG" <<'PYEOF'
import json, sys
cfg = json.load(open("examples/configs/wider_mnv2.json"))
cfg["model"]["num_classes"] = 6
cfg["data"] = {"crop_height": 513, "crop_width": 513, "min_scale": 1.0, "max_scale": 1.0, "scale_step": 0}
cfg["train"] = {"batch_size": 2, "optimizer": "sgd", "learning_rate": 0.001, "checkpoint_every": 0}
json.dump(cfg, open(sys.argv[1], "w"), indent=2)
PYEOF

echo "== deeperlab train ($DEV, $STEPS steps)" >&2
rm -rf "$WORK/run"
"$BUILD/deeperlab" train --config "$CFG" --data "$WORK/data" --out "$WORK/run" --steps "$STEPS" \
  --threads "$THREADS" --device "$DEV" --val-every 0 --no-progress >&2
# The first step pays for allocation and (on cuda) kernel warm-up: the median of the others.
TRAIN=$("$PY" - "$WORK/run/train_log.jsonl" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ips = [r["images_per_s"] for r in rows if "images_per_s" in r][1:]
print(f"{statistics.median(ips):.3f} (min {min(ips):.3f}, max {max(ips):.3f}, {len(ips)} steps)")
PYEOF
)

echo "== deeperlab bench --mode train ($DEV)" >&2
BENCH=$("$BUILD/deeperlab" bench --config "$CFG" --size 513x513 --batch 2 --iters 5 --threads "$THREADS" \
  --mode train --device "$DEV" | tee /dev/stderr | grep -m1 '^train')

echo "== PyTorch ($DEV)" >&2
TORCH_THREADS=$THREADS
[ "$TORCH_THREADS" = 0 ] && TORCH_THREADS=$(nproc)
TORCH=$("$PY" bench/torch_train.py --config "$CFG" --size 513 --batch 2 --steps 5 --threads "$TORCH_THREADS" \
  --device "$DEV" | tee /dev/stderr | tail -1)

echo "wider_mnv2, 513x513, batch 2, device $DEV, threads $THREADS, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "| run | result |"
echo "|---|---|"
echo "| deeperlab train, images/s (median of steps 2-$STEPS) | $TRAIN |"
echo "| deeperlab bench --mode train | $BENCH |"
echo "| PyTorch bench/torch_train.py | $TORCH |"
