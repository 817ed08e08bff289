#!/usr/bin/env bash
# GPU check of the training entrypoint, directly on a GPU machine (no Kubernetes, no Docker).
#
#   bash bench/gpu_training.sh            # ~1.5M rows, 5 epochs: a few minutes at most on one H100/H200
#
# Runs include/training/train.py exactly as the training pod does (same env contract), against a
# throwaway MLflow tracking store, and prints samples/s, GPU utilisation (nvidia-smi samples),
# peak GPU memory and the runtime the job recorded (device, driver, CUDA, cuDNN, torch,
# determinism flags). Not part of CI.
#
# Interpreter, first match wins:
#   $TRAIN_PYTHON                        an interpreter that already has the training stack
#   python3 with a CUDA torch installed  (a venv with --system-site-packages adds nothing else)
#   a venv built from requirements-gpu.txt (needs PyPI, or WHEELHOUSE=/dir with the wheels)
# Knobs: ROWS (1500000), EPOCHS (5), BATCH_SIZE (8192), HIDDEN (256), OUT (a temp dir).
# BENCH_ALLOW_CPU=1 rehearses the script on a CPU machine (fake nvidia-smi on PATH, tiny ROWS).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROWS="${ROWS:-1500000}"
EPOCHS="${EPOCHS:-5}"
BATCH_SIZE="${BATCH_SIZE:-8192}"
HIDDEN="${HIDDEN:-256}"
OUT="${OUT:-$(mktemp -d -t gpu-bench-XXXXXX)}"
mkdir -p "$OUT"
say() { printf '[gpu-bench] %s\n' "$*"; }

DEVICE=cuda
CUDA_CHECK='assert torch.cuda.is_available()'
if [[ "${BENCH_ALLOW_CPU:-0}" == 1 ]]; then DEVICE=auto; CUDA_CHECK='pass'; fi
command -v nvidia-smi >/dev/null || { say "nvidia-smi not found: this is not a GPU machine"; exit 2; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/[gpu-bench] GPU: /'

# ---------------------------------------------------------------- the training interpreter
has_stack() { "$1" -c "import torch, mlflow, pandas, pyarrow; $CUDA_CHECK" 2>/dev/null; }
PY="${TRAIN_PYTHON:-}"
if [[ -n "$PY" ]] && ! has_stack "$PY"; then say "TRAIN_PYTHON=$PY lacks torch+CUDA/mlflow/pandas/pyarrow"; exit 2; fi
if [[ -z "$PY" ]] && has_stack python3; then PY="$(command -v python3)"; fi
if [[ -z "$PY" ]]; then
  VENV="$OUT/venv"
  if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    say "using the machine's CUDA torch; adding the rest of the stack to a venv"
    python3 -m venv --system-site-packages "$VENV"
    "$VENV/bin/pip" install -q ${WHEELHOUSE:+--no-index --find-links "$WHEELHOUSE"} \
      mlflow-skinny==3.17.2 pandas==2.3.3 pyarrow==25.0.1 psutil==7.2.2 nvidia-ml-py==13.615.71
  else
    say "creating $VENV from requirements-gpu.txt (hash-checked)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --require-hashes --only-binary=:all: ${WHEELHOUSE:+--no-index --find-links "$WHEELHOUSE"} \
      -r "$ROOT/requirements-gpu.txt"
  fi
  PY="$VENV/bin/python"
  has_stack "$PY" || { say "the venv has no working CUDA torch"; exit 2; }
fi
say "training interpreter: $PY ($("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'))"

# ---------------------------------------------------------------- throwaway MLflow tracking store
MLFLOW_PID=""
cleanup() {
  [[ -n "$MLFLOW_PID" ]] && { kill -- "-$MLFLOW_PID" 2>/dev/null || kill "$MLFLOW_PID" 2>/dev/null; } || true
  [[ -n "${SMI_PID:-}" ]] && kill "$SMI_PID" 2>/dev/null || true
}
trap cleanup EXIT
MLFLOW_BIN=""
for candidate in "$(dirname "$PY")/mlflow" "$ROOT/.venv/bin/mlflow" "$(command -v mlflow || true)"; do
  # mlflow-skinny ships the CLI but not the server (no flask): check the server imports.
  if [[ -x "$candidate" ]] && "$(dirname "$candidate")/python" -c 'import mlflow.server' >/dev/null 2>&1; then
    MLFLOW_BIN="$candidate"; break
  fi
done
if [[ -n "$MLFLOW_BIN" ]]; then
  PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  # Own session, so the whole server (uvicorn workers included) goes with one kill at exit.
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$MLFLOW_BIN" server --backend-store-uri "sqlite:///$OUT/mlflow.db" \
    --artifacts-destination "$OUT/artifacts" --host 127.0.0.1 --port "$PORT" --workers 1 >"$OUT/mlflow.log" 2>&1 &
  MLFLOW_PID=$!
  export MLFLOW_TRACKING_URI="http://127.0.0.1:$PORT"
  for _ in $(seq 300); do curl -fs "$MLFLOW_TRACKING_URI/health" >/dev/null 2>&1 && break; sleep 1; done
  curl -fs "$MLFLOW_TRACKING_URI/health" >/dev/null || { say "MLflow server did not start: $OUT/mlflow.log"; exit 1; }
  say "MLflow server $MLFLOW_TRACKING_URI (store $OUT)"
else
  export MLFLOW_TRACKING_URI="file://$OUT/mlruns"  # mlflow-skinny has no server: a file store
  say "no 'mlflow server' here; tracking to $MLFLOW_TRACKING_URI"
fi

# ---------------------------------------------------------------- data
t0=$(date +%s)
"$PY" "$ROOT/include/data/generator.py" --day 2026-11-01 --customers "$ROWS" --out "$OUT/train.parquet" >/dev/null
say "training set: $ROWS rows in $(( $(date +%s) - t0 )) s -> $OUT/train.parquet"

# ---------------------------------------------------------------- train, sampling the GPU
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 >"$OUT/smi.csv" &
SMI_PID=$!
export MLFLOW_EXPERIMENT_NAME="gpu-bench"
export MLOPS_TRAINING_SET_URI="$OUT/train.parquet"
export MLOPS_TRAINING_SET_HASH="bench"
export MLOPS_DATASET_VERSION='{"repo": "bench", "rev": "bench", "path": "train.parquet", "md5": "bench"}'
export MLOPS_TRAINING_CONFIG="{\"epochs\": $EPOCHS, \"batch_size\": $BATCH_SIZE, \"hidden\": $HIDDEN, \"device\": \"$DEVICE\"}"
export MLOPS_RUN_TAGS='{"mlops.dag_id": "bench", "mlops.run_id": "gpu_training.sh", "mlops.task_id": "train"}'
export MLOPS_RESULT_PATH="$OUT/result.json"
t0=$(date +%s)
"$PY" "$ROOT/include/training/train.py" 2>&1 | tee "$OUT/train.log" | grep -E "^\[train\] (data|epoch)|TRAINING" || true
WALL=$(( $(date +%s) - t0 ))
kill "$SMI_PID" 2>/dev/null || true
SMI_PID=""

# ---------------------------------------------------------------- report
"$PY" - "$OUT" "$WALL" <<'EOF'
import json, sys
from pathlib import Path

out, wall = Path(sys.argv[1]), int(sys.argv[2])
result = json.loads((out / "result.json").read_text())
if result.get("status") != "FINISHED":
    sys.exit(f"[gpu-bench] training failed: {result.get('error')} (log: {out / 'train.log'})")
util, mem = [], []
for line in (out / "smi.csv").read_text().splitlines():
    try:
        u, m = (float(x) for x in line.split(",")[:2])
    except ValueError:
        continue
    util.append(u)
    mem.append(m)
busy = [u for u in util if u > 0] or [0.0]
rt, metrics = result["runtime"], result["metrics"]
print("[gpu-bench] ---------------------------------------------------------------")
print(f"[gpu-bench] samples/s            {metrics['samples_per_s']:,.0f}  ({result['n_train']:,} rows x epochs "
      f"in {metrics['train_seconds']:.1f} s; whole job {wall} s)")
print(f"[gpu-bench] GPU utilisation      mean {sum(busy) / len(busy):.0f} % while busy, max {max(util or [0]):.0f} % "
      f"({len(util)} nvidia-smi samples)")
print(f"[gpu-bench] peak GPU memory      {rt.get('gpu_max_memory_allocated_bytes', 0) / 2**20:,.0f} MiB allocated by "
      f"torch, {max(mem or [0]):,.0f} MiB used on the device (nvidia-smi)")
print(f"[gpu-bench] val_auc              {metrics.get('val_auc', float('nan')):.4f}")
keys = ["device", "device_name", "driver_version", "cuda_version", "cudnn_version", "torch_version", "amp_dtype",
        "gpu_compute_capability", "determinism", "image_digest"]
print("[gpu-bench] recorded runtime     " + json.dumps({k: rt.get(k) for k in keys}, indent=2).replace("\n", "\n[gpu-bench] "))
print(f"[gpu-bench] MLflow run           {result['run_id']} ({result['model_uri']})")
EOF
