#!/usr/bin/env bash
# The README's main job: set up .venv, then run the bundle's three-stage two-shot training on the
# embedded synthetic dataset (generated on first use) followed by evaluation on its test split.
#   bash scripts/main.sh [extra monai.bundle overrides, e.g. --dataset_dir DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
"$root/.venv/bin/python" -m monai.bundle run training --config_file bundle/configs/train.yaml "$@"
echo "[main] outputs: $root/outputs/train   dataset: $root/data/synthetic"
echo "[main] MLflow runs (unless --tracking_uri was given): ${MLFLOW_TRACKING_URI:-sqlite:///$root/outputs/train/mlruns.db}  (README: Experiment tracking)"
