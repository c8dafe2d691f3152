#!/usr/bin/env bash
# The GPU check (issue 11, point 8): one script, under 10 minutes on one GPU.
#
#   bash scripts/gpu_check.sh               # on a CUDA machine
#   bash scripts/gpu_check.sh --cpu-smoke   # the same steps on the CPU at tiny sizes (tested)
#
# Steps (each with its own time limit, all within BUDGET_S seconds; each step's log goes to
# $LOG_DIR/<step>.log):
#   cuda_tests  pytest -m cuda (the tests that need a CUDA device; on a CPU they are skipped)
#   bench       benchmarks/bench_solvers.py --device cuda --cvxpy-timeout 20   (--cpu-smoke:
#               --device cpu --quick --skip-scaling)
#   pipeline    python -m cvxattn_lib.cifar train on the shipped real set ($DATA through $BACKBONE),
#               beta given as fractions of each head's beta_max ($FRACTIONS)
#   cifar100    the same on CIFAR-100 through $CIFAR_BACKBONE when its files are present under
#               $DATA_ROOT/cifar-100-python/ (skipped otherwise; --cpu-smoke without them: the
#               labelled synthetic stand-in through $BACKBONE)
# The pipeline steps write their results JSON under $DATA_ROOT/results/ (rows with the device and
# the training time of each head); the check's own summary (device name, versions, each step's
# command, exit status, seconds and the tail of its log) goes to
# $DATA_ROOT/results/gpu_check/<time>-<device>.json (a subfolder: `report` and notebook 05 read only
# results files directly under results/).  Exit status: 0 when every step that ran passed, 1 when
# one failed or ran out of its time, 2 on bad options.
#
# Variables (defaults in brackets; --cpu-smoke's in braces):
#   PYTHON [.venv/bin/python if present, else python]   DEVICE [cuda] {cpu}
#   DATA_ROOT [$CVXATTN_DATA or data] {$LOG_DIR/smoke-data}   LOG_DIR [build/gpu_check]
#   DATA [digits]  DIGITS_DIR [data/digits]: where the shipped set lies; with --cpu-smoke and no such
#       folder, a generated 3-class ImageFolder is used instead
#   BACKBONE [resnet20:data/weights/resnet20_digits.safetensors:layer2]; with --cpu-smoke and no such
#       weights file, a random-weight resnet20:layer2
#   HEADS [available]
#   FRACTIONS [0.01,0.1]   TRAIN_ARGS (extra train options) [--reduce-dim 16 --reduce-tokens 16 ...]
#   CIFAR_BACKBONE [gmlp_s16_224]   CIFAR_ARGS [--subset 2000 --test-subset 500 ...]
#   BENCH_ARGS [--device $DEVICE --cvxpy-timeout 20]
#   STEPS [cuda_tests,bench,pipeline,cifar100]   BUDGET_S [570]: the whole check's time
#   LIMIT_CUDA_TESTS [90]  LIMIT_BENCH [180]  LIMIT_PIPELINE [180]  LIMIT_CIFAR100 [120]: per step; a
#       step gets at most what is left of BUDGET_S
# CIFAR-100 through gMLP-S is pretrained only when timm finds its weights in the local cache (no
# network: random weights, labelled as such in the table).
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

SMOKE=0
for arg in "$@"; do
  case "$arg" in
    --cpu-smoke) SMOKE=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $arg (use --cpu-smoke or --help)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.." || exit 2
REPO=$PWD
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
START=$(date +%s)
LOG_DIR=${LOG_DIR:-build/gpu_check}
BUDGET_S=${BUDGET_S:-570}
DATA=${DATA:-digits}
DIGITS_DIR=${DIGITS_DIR:-data/digits}
BACKBONE=${BACKBONE:-resnet20:data/weights/resnet20_digits.safetensors:layer2}
FRACTIONS=${FRACTIONS:-0.01,0.1}
CIFAR_BACKBONE=${CIFAR_BACKBONE:-gmlp_s16_224}
STEPS=${STEPS:-cuda_tests,bench,pipeline,cifar100}
if [ "$SMOKE" = 1 ]; then
  DEVICE=${DEVICE:-cpu}
  DATA_ROOT=${DATA_ROOT:-$LOG_DIR/smoke-data}
  HEADS=${HEADS:-available}
  TRAIN_ARGS=${TRAIN_ARGS:---subset 24 --test-subset 12 --reduce-dim 4 --reduce-tokens 4 --epochs 1 \
--batch-size 8 --threads 1 --solver-option n_gates=2 --solver-option tol=1e-4 --solver-option max_iter=300}
  CIFAR_ARGS=${CIFAR_ARGS:-$TRAIN_ARGS --no-download}
  BENCH_ARGS=${BENCH_ARGS:---device cpu --quick --skip-scaling}
else
  DEVICE=${DEVICE:-cuda}
  DATA_ROOT=${DATA_ROOT:-${CVXATTN_DATA:-data}}
  HEADS=${HEADS:-available}
  TRAIN_ARGS=${TRAIN_ARGS:---reduce-dim 16 --reduce-tokens 16 --epochs 20 --solver-option tol=1e-3 \
--solver-option max_iter=3000 --solver-option n_gates=8}
  CIFAR_ARGS=${CIFAR_ARGS:---subset 2000 --test-subset 500 --reduce-dim 16 --reduce-tokens 16 --epochs 10 \
--no-download --no-standin --solver-option tol=1e-3 --solver-option max_iter=2000 --solver-option n_gates=8}
  BENCH_ARGS=${BENCH_ARGS:---device $DEVICE --cvxpy-timeout 20}
fi
mkdir -p "$LOG_DIR" "$DATA_ROOT/results/gpu_check" || exit 2
STEPS_TSV="$LOG_DIR/steps-$STAMP.tsv"
: > "$STEPS_TSV"
FAILED=0

# record NAME STATUS SECONDS LOG COMMAND [RESULTS]
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6:-}" >> "$STEPS_TSV"; }

# run_step NAME LIMIT RESULTS CMD...: run CMD with its log, within LIMIT and what is left of BUDGET_S
run_step() {
  local name=$1 limit=$2 results=$3; shift 3
  local log="$LOG_DIR/$name.log" left t0 rc status
  case ",$STEPS," in *",$name,"*) ;; *) record "$name" "skipped (not in STEPS)" 0 "" "$*"; return 0 ;; esac
  left=$(( BUDGET_S - ($(date +%s) - START) ))
  if [ "$left" -lt "$limit" ]; then limit=$left; fi
  if [ "$limit" -lt 10 ]; then
    record "$name" "failed (no time left of BUDGET_S=$BUDGET_S)" 0 "" "$*"; FAILED=1; return 1
  fi
  echo "== $name (limit ${limit}s): $*"
  t0=$(date +%s)
  { echo "# $*"; timeout --kill-after=10 "$limit" "$@"; } > "$log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="failed (over its ${limit}s limit)"; FAILED=1 ;;
    *) status="failed (exit $rc)"; FAILED=1 ;;
  esac
  record "$name" "$status" "$(( $(date +%s) - t0 ))" "$log" "$*" "$results"
  echo "   $status in $(( $(date +%s) - t0 ))s; log $log"
  tail -n 3 "$log" | sed 's/^/   | /'
}

# -- the device --------------------------------------------------------------------------------------
DEVICE_NAME=$("$PYTHON" - "$DEVICE" <<'EOF'
import sys, platform
import torch
dev = torch.device(sys.argv[1])
if dev.type == "cuda":
    if not torch.cuda.is_available():
        print("NO-CUDA")
    else:
        print(torch.cuda.get_device_name(dev))
else:
    print(f"cpu ({platform.processor() or platform.machine()})")
EOF
)
if [ "$DEVICE_NAME" = "NO-CUDA" ] || [ -z "$DEVICE_NAME" ]; then
  echo "gpu_check.sh: DEVICE=$DEVICE but torch sees no CUDA device; run it on a GPU machine, or" \
       "use --cpu-smoke to try the steps on the CPU" >&2
  exit 2
fi
echo "gpu_check: $DEVICE_NAME; logs in $LOG_DIR; results under $DATA_ROOT/results"

# -- the shipped real set and its backbone (or, for the smoke run, stand-ins) -------------------------
if [ "$DATA" = digits ] && [ ! -d "$DIGITS_DIR" ] && [ "$SMOKE" = 1 ]; then
  GEN="$LOG_DIR/smoke-imagefolder"
  "$PYTHON" - "$GEN" <<'EOF' || exit 1
import sys
from pathlib import Path
import numpy as np
from PIL import Image
root = Path(sys.argv[1])
rng = np.random.default_rng(0)
for split, n in (("train", 8), ("test", 4)):  # 3 classes, class k = channel k bright, plus noise
    for k, name in enumerate(("red", "green", "blue")):
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 80, size=(32, 32, 3))
            img[..., k] += 150
            Image.fromarray(img.astype(np.uint8)).save(folder / f"{i:03d}.png")
EOF
  DATA="imagefolder:$GEN"
  echo "shipped set absent ($DIGITS_DIR): smoke run on a generated 3-class ImageFolder $GEN"
fi
WEIGHTS=$(printf '%s' "$BACKBONE" | "$PYTHON" -c "import sys; from cvxattn_lib.cifar.names import \
parse_backbone, is_resnet; s = sys.stdin.read(); print(parse_backbone(s)[1] or '' if is_resnet(s) else '')")
if [ -n "$WEIGHTS" ] && [ ! -f "$WEIGHTS" ] && [ "$SMOKE" = 1 ]; then
  BACKBONE="resnet20:$(printf '%s' "$BACKBONE" | sed 's/.*://')"
  echo "backbone weights absent ($WEIGHTS): smoke run on a random-weight $BACKBONE"
fi

# -- the steps ----------------------------------------------------------------------------------------
run_step cuda_tests "${LIMIT_CUDA_TESTS:-90}" "" \
  "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda tests
# shellcheck disable=SC2086
run_step bench "${LIMIT_BENCH:-180}" "" "$PYTHON" benchmarks/bench_solvers.py $BENCH_ARGS

NAME=$(printf '%s' "$DATA" | sed 's#^imagefolder:##; s#/*$##; s#.*/##')
OUT="$DATA_ROOT/results/${NAME}-gpu_check-$STAMP.json"
# shellcheck disable=SC2086
run_step pipeline "${LIMIT_PIPELINE:-180}" "$OUT" \
  "$PYTHON" -m cvxattn_lib.cifar train --data-root "$DATA_ROOT" --data "$DATA" --backbone "$BACKBONE" \
  --device "$DEVICE" --heads "$HEADS" --beta-fractions "$FRACTIONS" --no-progress --out "$OUT" $TRAIN_ARGS

if [ -d "$DATA_ROOT/cifar-100-python" ]; then
  OUT100="$DATA_ROOT/results/cifar100-gpu_check-$STAMP.json"
  # shellcheck disable=SC2086
  run_step cifar100 "${LIMIT_CIFAR100:-120}" "$OUT100" \
    "$PYTHON" -m cvxattn_lib.cifar train --data-root "$DATA_ROOT" --data cifar100 \
    --backbone "$CIFAR_BACKBONE" --device "$DEVICE" --heads "$HEADS" --beta-fractions "$FRACTIONS" \
    --no-progress --out "$OUT100" $CIFAR_ARGS
elif [ "$SMOKE" = 1 ]; then  # the same command on the labelled synthetic stand-in (tiny sizes)
  OUT100="$DATA_ROOT/results/cifar100-standin-gpu_check-$STAMP.json"
  # shellcheck disable=SC2086
  run_step cifar100 "${LIMIT_CIFAR100:-120}" "$OUT100" \
    "$PYTHON" -m cvxattn_lib.cifar train --data-root "$DATA_ROOT" --data cifar100 \
    --backbone "$BACKBONE" --device "$DEVICE" --heads "$HEADS" --beta-fractions "$FRACTIONS" \
    --no-progress --out "$OUT100" $CIFAR_ARGS
else
  record cifar100 "skipped (no $DATA_ROOT/cifar-100-python)" 0 "" ""
fi

# -- the summary --------------------------------------------------------------------------------------
SUMMARY="$DATA_ROOT/results/gpu_check/$STAMP-$(printf '%s' "$DEVICE_NAME" | tr -c 'A-Za-z0-9._-' '_').json"
"$PYTHON" - "$STEPS_TSV" "$SUMMARY" "$DEVICE" "$DEVICE_NAME" "$SMOKE" "$STAMP" "$(( $(date +%s) - START ))" \
  "$BUDGET_S" <<'EOF'
import json, os, platform, subprocess, sys
from pathlib import Path
import torch
tsv, summary, device, name, smoke, stamp, total, budget = sys.argv[1:]
steps = []
for line in Path(tsv).read_text().splitlines():
    step, status, secs, log, cmd, results = (line.split("\t") + [""] * 6)[:6]
    entry = {"step": step, "status": status, "seconds": int(secs), "command": cmd, "log": log or None}
    if log and Path(log).is_file():
        entry["log_tail"] = Path(log).read_text(errors="replace").splitlines()[-40:]
    if results:
        entry["results"] = results if Path(results).is_file() else None
    steps.append(entry)
try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
except OSError:
    commit = None
out = {"format": "cvxattn-gpu-check/1", "created": stamp, "mode": "cpu-smoke" if smoke == "1" else "gpu",
       "device": device, "device_name": name, "torch": torch.__version__, "cuda": torch.version.cuda,
       "python": platform.python_version(), "host": platform.node(), "commit": commit,
       "total_seconds": int(total), "budget_seconds": int(budget),
       "passed": all(not s["status"].startswith("failed") for s in steps), "steps": steps}
Path(summary).parent.mkdir(parents=True, exist_ok=True)
tmp = Path(summary + ".tmp")
tmp.write_text(json.dumps(out, indent=1))
os.replace(tmp, summary)
print(f"\ngpu_check summary ({out['mode']}, {name}, {total} s of {budget} s):")
for s in steps:
    print(f"  {s['step']:11s} {s['status']:40s} {s['seconds']:5d} s  {s['log'] or ''}")
    if s.get("results"):
        print(f"  {'':11s} results: {s['results']}")
print(f"summary written to {summary}")
EOF
[ $? -eq 0 ] || FAILED=1
rm -f "$STEPS_TSV"
if [ "$FAILED" != 0 ]; then
  echo "gpu_check: FAILED (see the logs above)" >&2
  exit 1
fi
echo "gpu_check: all steps passed"
