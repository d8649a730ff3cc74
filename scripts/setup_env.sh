#!/usr/bin/env bash
# Create or reuse the repository's virtual environment (.venv) and install stbv-monai into it.
#
#   scripts/setup_env.sh [EXTRAS]      e.g. scripts/setup_env.sh dev,label
#
# A second run with the same (or fewer) extras and unchanged setup files installs nothing.
# torch is installed first, by exact version, so that no dependency resolves it to a
# multi-GB CUDA build; override the pins with STBV_TORCH (core) / STBV_TORCH_VISION (label)
# on machines where another build is wanted (e.g. STBV_TORCH="torch" to let pip choose).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
extras="${1:-}"
torch_core="${STBV_TORCH:-torch==2.13.0}"
torch_vision="${STBV_TORCH_VISION:-torch==2.14.1 torchvision==0.29.1}"

python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  python_bin="$(command -v python3.11 || command -v python3)"
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtual environment $venv" >&2
  "$python_bin" -m venv "$venv"
fi
py="$venv/bin/python"

digest="$(cat "$root/setup.cfg" "$root/pyproject.toml" "$root/scripts/setup_env.sh" | sha1sum | cut -c1-16)"
stamp="$venv/.stbv-setup"
wanted="$(echo "$extras" | tr ',' '\n' | sed '/^$/d' | sort -u)"
if [ -f "$stamp" ] && [ "$(head -n1 "$stamp")" = "$digest" ]; then
  have="$(tail -n +2 "$stamp")"
  missing="$(comm -23 <(echo "$wanted" | sed '/^$/d') <(echo "$have" | sed '/^$/d'))"
  if [ -z "$missing" ]; then
    echo "[setup] $venv is up to date (extras: ${have//$'\n'/,})" >&2
    exit 0
  fi
  wanted="$(printf '%s\n%s\n' "$wanted" "$have" | sed '/^$/d' | sort -u)"
fi

pip=("$py" -m pip install --disable-pip-version-check --progress-bar off -q)
if echo "$wanted" | grep -qx label; then
  if ! "$py" -c "import torchvision" >/dev/null 2>&1; then
    echo "[setup] installing $torch_vision (MONAI Label imports torchvision)" >&2
    # shellcheck disable=SC2086
    "${pip[@]}" $torch_vision
  fi
elif ! "$py" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing $torch_core" >&2
  # shellcheck disable=SC2086
  "${pip[@]}" $torch_core
fi

spec="$root"
if [ -n "$wanted" ]; then
  spec="$root[$(echo "$wanted" | paste -sd, -)]"
fi
echo "[setup] installing stbv-monai (${spec#"$root"}) into $venv" >&2
"${pip[@]}" -e "$spec"
{ echo "$digest"; echo "$wanted"; } > "$stamp"
echo "[setup] done" >&2
