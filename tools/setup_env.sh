#!/usr/bin/env bash
# Creates or updates ./.venv with the pinned mmghost stack (CPU torch, mmcv with compiled ops, mmdet).
#
# Idempotent: when every pin is already satisfied it only checks and exits in a few seconds.
# The one slow step is mmcv 2.1.0, which has no wheel on PyPI and is compiled from source
# (7.5 minutes measured on 2 cores with ninja); pip caches the built wheel, so later setups on the same machine
# are instant.
#
# Environment: PYTHON (interpreter for a new venv, default python3), MMGHOST_VENV (default .venv),
# MAX_JOBS (parallel compile jobs for mmcv, default: number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${MMGHOST_VENV:-.venv}
CONSTRAINTS=requirements/constraints.txt
STAMP="$VENV/.mmghost-setup-stamp"
log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# The stamp records the inputs of the last successful setup; if they are unchanged and the stack imports,
# there is nothing to do.
want=$(cat tools/setup_env.sh setup.py requirements/*.txt | sha256sum | cut -d' ' -f1)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] &&
   "$VENV/bin/python" -c 'import mmcv.ops, mmdet, mmghost' 2>/dev/null; then
  log "environment $VENV is up to date"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtual environment $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# pip warns once per package about this machine's empty local index folders; that is noise, drop it.
pip_install() {
  "$PY" -m pip install --disable-pip-version-check -q -c "$CONSTRAINTS" "$@" \
    2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}

log "installing build tools and torch 2.13.0 (CPU build)"
pip_install 'setuptools>=77,<82' wheel ninja torch==2.13.0 numpy
log "installing mmengine and mmcv's runtime requirements"
pip_install mmengine addict packaging Pillow pyyaml yapf opencv-python

if "$PY" - <<'EOF' 2>/dev/null
import mmcv, mmcv.ops
assert mmcv.__version__ == '2.1.0'
EOF
then
  log "mmcv 2.1.0 with ops already installed"
else
  log "building mmcv 2.1.0 with compiled ops from source: about 8 minutes on 2 cores the first time on a machine, instant from pip's wheel cache after that"
  start=$SECONDS
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} pip_install --no-build-isolation mmcv==2.1.0
  log "mmcv built and installed in $(( SECONDS - start )) s"
fi

log "installing mmdet 3.3.0 and the test requirements"
pip_install mmdet==3.3.0 -r requirements/tests.txt
log "installing mmghost (editable)"
pip_install --no-build-isolation --no-deps -e .

"$PY" -c 'import torch, mmcv, mmcv.ops, mmengine, mmdet, mmghost
print(f"torch {torch.__version__}, mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, "
      f"mmdet {mmdet.__version__}, mmghost {mmghost.__version__}")'
echo "$want" > "$STAMP"
log "environment $VENV is ready"
