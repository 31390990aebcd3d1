#!/usr/bin/env bash
# Install the peer trackers that benchmarks/peers/run.py compares Alexandria with, each into its own
# virtual environment under benchmarks/peers/.venvs/<peer>. They are not dependencies of Alexandria.
#
#   benchmarks/peers/setup.sh                 # every peer
#   benchmarks/peers/setup.sh mlflow aim      # only these
#
# Idempotent: a venv that already has the pinned version is left alone. A peer that cannot be
# installed here is reported and skipped; the exit code is 1 if any requested peer failed.
set -uo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}

# Pinned versions (exact). The mlflow distribution (not mlflow-skinny) brings SQLAlchemy and
# alembic, which its SQLite tracking store needs.
declare -A PINS=(
    [mlflow]="mlflow==3.17.2"
    [tensorboardX]="tensorboardX==2.6.5"
    [aim]="aim==3.29.1"
    [trackio]="trackio==0.43.0"
    [wandb]="wandb==0.31.0"
)
ORDER=(mlflow tensorboardX aim trackio wandb)

# No peer phones home while we check its import.
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true AIM_UI_TELEMETRY_ENABLED=0 AIM_TELEMETRY_ENABLED=0 \
    WANDB_MODE=offline WANDB_SILENT=true TRACKIO_DISABLE_TELEMETRY=1

if [ $# -gt 0 ]; then
    peers=("$@")
else
    peers=("${ORDER[@]}")
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "setup.sh: $PYTHON not found (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

installed_version() {  # venv dir, distribution name -> prints the installed version, or nothing
    [ -x "$1/bin/python" ] || return 0
    "$1/bin/python" - "$2" 2>/dev/null <<'PY' || true
import importlib.metadata as m
import sys

try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    pass
PY
}

failed=()
for peer in "${peers[@]}"; do
    spec=${PINS[$peer]:-}
    if [ -z "$spec" ]; then
        echo "[$peer] unknown peer (known: ${ORDER[*]})" >&2
        failed+=("$peer")
        continue
    fi
    dist=${spec%%==*}
    want=${spec##*==}
    venv=.venvs/$peer
    have=$(installed_version "$venv" "$dist")
    if [ "$have" = "$want" ]; then
        echo "[$peer] $spec already installed in benchmarks/peers/$venv"
        continue
    fi
    echo "[$peer] installing $spec into benchmarks/peers/$venv ..."
    log=$(mktemp)
    if { [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"; } >"$log" 2>&1 \
        && "$venv/bin/python" -m pip install -q "$spec" >>"$log" 2>&1 \
        && [ "$(installed_version "$venv" "$dist")" = "$want" ]; then
        echo "[$peer] ok: $spec"
    else
        echo "[$peer] FAILED: $spec could not be installed here; skipping it. Last lines of the log:" >&2
        grep -v "^WARNING: Location" "$log" | tail -n 20 | cut -c1-300 | sed "s/^/[$peer]   /" >&2
        failed+=("$peer")
    fi
    rm -f "$log"
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "setup.sh: not installed: ${failed[*]}" >&2
    exit 1
fi
echo "setup.sh: done (${peers[*]})"
