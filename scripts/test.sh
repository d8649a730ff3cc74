#!/usr/bin/env bash
# The README's test command: set up .venv with the dev and label extras, then run the suite.
#   bash scripts/test.sh [pytest args]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup_env.sh dev,label
export MPLBACKEND=Agg PYTHONUNBUFFERED=1
exec "$root/.venv/bin/python" -m pytest -q --timeout=600 "$@"
