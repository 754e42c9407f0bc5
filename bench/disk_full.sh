#!/bin/bash
# A real full disk under a sweep: the sweep folder on a small tmpfs (needs root for the mount),
# filled once trial 0 has completed; then space is freed and the sweep resumed.
# Usage: sudo bash bench/disk_full.sh [SIZE]  (from the project root; SIZE of the tmpfs, default 768m)
# Prints: exit codes, stderr line and traceback counts, Optuna and MLflow states after each run.
set -u
SIZE=${1:-768m}
PY=${PY:-.venv/bin/python}
M=$(mktemp -d)
trap 'umount "$M" 2>/dev/null; rmdir "$M"' EXIT
exec > >(sed "s|$M|<tmpfs>|g")
mount -t tmpfs -o "size=$SIZE" tmpfs "$M" || { echo "cannot mount a tmpfs (run as root)"; exit 1; }
OUT=$M/s
LOGS=$(mktemp -d)
ARGS=(--smoke --num-samples=4 --max-concurrent=1 --epochs=2 --set=classifier.epochs=1 --set=dataset.n_train=400
  --set=dataset.n_test=100 "--set=eval.grid=[{attack: pgd, targets: each, eps: [0.1, 0.2], alpha: 0.05, steps: 2}]"
  "--out=$OUT")
states() {
  OUT="$OUT" $PY - <<'PY'
import os, optuna
from mlflow import MlflowClient
out = os.environ["OUT"]
s = optuna.load_study(study_name="gmcwd_weights", storage=f"sqlite:///{out}/optuna.db")
print("  optuna:", ", ".join(f"{t.number} {t.state.name}" for t in s.trials))
c = MlflowClient(f"sqlite:///{out}/mlflow.db")
runs = c.search_runs([c.get_experiment_by_name("gmcwd_weights").experiment_id])
print("  mlflow:", ", ".join(sorted(f"{r.data.tags.get('trial_number', 'parent')} {r.info.status}" for r in runs)))
PY
}
CI=true PYTHONUNBUFFERED=1 $PY sweeps/gmcwd_weights.py "${ARGS[@]}" > "$LOGS/1.out" 2> "$LOGS/1.err" &
PID=$!
for _ in $(seq 1200); do grep -q "trial 0 complete" "$LOGS/1.err" && break; sleep 0.5; done
dd if=/dev/zero of="$M/fill" bs=1M 2>/dev/null
wait $PID
echo "full disk: exit $?, $(wc -l < "$LOGS/1.err") stderr lines, $(grep -c '^Traceback' "$LOGS/1.err") tracebacks"
echo "  last line: $(tail -1 "$LOGS/1.err")"
states
rm -f "$M/fill"
CI=true PYTHONUNBUFFERED=1 $PY sweeps/gmcwd_weights.py "${ARGS[@]}" --resume > "$LOGS/2.out" 2> "$LOGS/2.err"
echo "--resume after freeing space: exit $?, $(grep -c '^Traceback' "$LOGS/2.err") tracebacks"
grep -E "cannot be restored|resuming the Ray" "$LOGS/2.err" | sed 's/^/  /'
states
$PY -c "import pandas as pd, sys; t = pd.read_parquet(sys.argv[1]); print('  trials.parquet:', ', '.join(f'{a} {b}' for a, b in zip(t.trial, t.status)))" "$OUT/trials.parquet"
rm -rf "$LOGS"
