#!/usr/bin/env bash
# Creates or updates the virtual environments of the two stacks mmghost is tested on.
#
#   tools/setup_env.sh                # both stacks (what `make test` runs)
#   tools/setup_env.sh torch213       # .venv:         torch 2.13.0 CPU build, mmcv 2.1.0 with ops, mmdet 3.3.0
#   tools/setup_env.sh torch21        # .venv-torch21: torch 2.1.2 + torchvision 0.16.2 (PyPI's CUDA build, runs on
#                                     #                the CPU), mmcv 2.1.0 with ops, mmdet 3.3.0, timm, mmpretrain
#   tools/setup_env.sh deploy         # .venv-deploy:  the torch 2.1.2 stack with mmdeploy 1.3.1 and its onnx 1.17.0 /
#                                     #                protobuf 3.20.2 (tools/deploy.py), openvino 2026.4.1; reuses
#                                     #                torch21's mmcv wheel
#   tools/setup_env.sh runtime        # .venv-runtime: numpy, onnxruntime, openvino, opencv only -- no torch, no
#                                     #                OpenMMLab: where the torch-free runtime (mmghost.deploy) is
#                                     #                tested (deploy builds it too)
#   tools/setup_env.sh all            # torch213 torch21 deploy (the default; what `make test` runs)
#
# Idempotent: when a stack's inputs are unchanged and it imports, it only checks and returns in seconds.
# The slow step is mmcv 2.1.0, which has no wheel on PyPI and is compiled from source: 77 C++ files that each
# parse torch's headers. It is built without debug information (-g0 after the interpreter's own flags, -g -O3;
# the -O3 optimisation stays): on 2 cores that halves the build (one file, nms.cpp, against torch 2.13 headers: 70 s with
# -g, 31 s with -g0), and a wheel of ours has no use for gdb symbols. Its compiled ops link against one torch
# build, and pip's wheel cache keys wheels by name and version only: a wheel built against torch 2.13 installed beside torch 2.1 fails with
# "undefined symbol". So mmcv is built with pip's cache off and kept in our own cache, one folder per torch
# build and Python: $MMGHOST_WHEEL_CACHE (default ~/.cache/mmghost/wheels)/mmcv-2.1.0/torch-<version>-<python>/.
#
# Python: the torch 2.13 stack runs on Python 3.11; the torch 2.1 stacks (torch21, deploy) run on Python 3.10,
# the oldest Python that mmghost claims (python_requires), as most MMDetection 3.3 environments do. Both come
# from pyenv on the project's machines.
#
# Environment: PYTHON311 / PYTHON310 (interpreters for new venvs; default python3.11 / python3.10),
# MAX_JOBS (parallel compile jobs per mmcv build; default: the cores, half of them each when two chains run side by
# side, see the end of this file), MMGHOST_WHEEL_CACHE, MMGHOST_SETUP_SERIAL
# (set: one stack after the other instead of two chains side by side).
set -euo pipefail
cd "$(dirname "$0")/.."

# find_python X.Y: pythonX.Y on PATH if it runs (a pyenv shim of a version that is not active does not), else
# pyenv's own install of X.Y.
find_python() {
  if "python$1" --version >/dev/null 2>&1; then command -v "python$1"; return; fi
  local root=${PYENV_ROOT:-$HOME/.pyenv} candidate
  for candidate in "$root"/versions/"$1".*/bin/"python$1"; do
    [[ -x "$candidate" ]] && { echo "$candidate"; return; }
  done
  echo "tools/setup_env.sh: Python $1 not found (set PYTHON${1/./} or install it, e.g. pyenv install $1)" >&2
  return 1
}
PYTHON311=${PYTHON311:-$(find_python 3.11)}
PYTHON310=${PYTHON310:-$(find_python 3.10)}
WHEEL_CACHE=${MMGHOST_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmghost/wheels}
MMCV_VERSION=2.1.0
log() { printf '[setup %s %s] %s\n' "$STACK" "$(date +%H:%M:%S)" "$*"; }

# setup_stack NAME PYTHON VENV CONSTRAINTS TORCH_PACKAGES EXTRA_REQUIREMENTS
setup_stack() {
  STACK=$1
  local python=$2 venv=$3 constraints=$4 torch_packages=$5 extra=$6
  local stamp="$venv/.mmghost-setup-stamp" start=$SECONDS
  local want
  want=$(cat tools/setup_env.sh setup.py requirements/tests.txt "$constraints" ${extra:+"$extra"} \
         | sha256sum | cut -d' ' -f1)
  if [[ -x "$venv/bin/python" && "$("$venv/bin/python" -c 'import sys; print(sys.version_info[:2])')" != \
        "$("$python" -c 'import sys; print(sys.version_info[:2])')" ]]; then
    log "$venv has another Python than $("$python" --version): recreating it"
    rm -rf "$venv"
  fi
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
     "$venv/bin/python" -c 'import mmcv.ops, mmdet, mmghost' 2>/dev/null; then
    log "environment $venv is up to date"
    return 0
  fi

  if [[ ! -x "$venv/bin/python" ]]; then
    log "creating virtual environment $venv with $("$python" --version)"
    "$python" -m venv "$venv"
  fi
  local py="$venv/bin/python"
  # pip warns once per package about this machine's empty local index folders; that is noise, drop it.
  pip_install() {
    "$py" -m pip install --disable-pip-version-check -q -c "$constraints" "$@" \
      2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
  }

  log "installing build tools and $torch_packages"
  # shellcheck disable=SC2086  # torch_packages is a list of requirement words
  pip_install 'setuptools>=77,<82' wheel ninja $torch_packages numpy
  log "installing mmengine and mmcv's runtime requirements"
  pip_install mmengine addict packaging Pillow pyyaml yapf opencv-python

  if "$py" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
    log "mmcv $MMCV_VERSION with ops already installed"
  else
    local key wheels
    key=$("$py" -c 'import sys, torch; print(f"torch-{torch.__version__}-cp{sys.version_info[0]}{sys.version_info[1]}")')
    wheels="$WHEEL_CACHE/mmcv-$MMCV_VERSION/$key"
    if ! ls "$wheels"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
      log "building mmcv $MMCV_VERSION with compiled ops against $key (kept in $wheels)"
      local build_start=$SECONDS tmp="$wheels.partial.$$"
      rm -rf "$tmp" && mkdir -p "$tmp"
      # CFLAGS replaces (does not extend) the interpreter's compile flags in setuptools' build, so it repeats them
      local cflags
      cflags="$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("CFLAGS") or "")') -g0"
      CFLAGS="$cflags" MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$JOBS} "$py" -m pip wheel --disable-pip-version-check -q \
        --no-cache-dir --no-build-isolation --no-deps -c "$constraints" -w "$tmp" "mmcv==$MMCV_VERSION" \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
      mkdir -p "$(dirname "$wheels")" && rm -rf "$wheels" && mv "$tmp" "$wheels"
      log "mmcv built in $(( SECONDS - build_start )) s"
    fi
    log "installing mmcv from $wheels"
    "$py" -m pip uninstall -q -y mmcv mmcv-lite >/dev/null 2>&1 || true
    pip_install --no-deps --no-cache-dir "$wheels"/mmcv-"$MMCV_VERSION"-*.whl
    "$py" -c 'import mmcv.ops' || { log "mmcv's ops do not load beside this torch: delete $wheels and rerun"; return 1; }
  fi

  log "installing mmdet 3.3.0, the test requirements${extra:+ and $extra}"
  pip_install mmdet==3.3.0 -r requirements/tests.txt ${extra:+-r "$extra"}
  log "installing mmghost (editable)"
  pip_install --no-build-isolation --no-deps -e .

  "$py" -c 'import torch, mmcv, mmcv.ops, mmengine, mmdet, mmghost
print(f"torch {torch.__version__}, mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, "
      f"mmdet {mmdet.__version__}, mmghost {mmghost.__version__}")'
  echo "$want" > "$stamp"
  log "environment $venv is ready ($(( SECONDS - start )) s)"
}

# setup_runtime VENV CONSTRAINTS: the torch-free runtime's venv. mmghost is installed without its dependencies
# (they are the PyTorch/OpenMMLab stack); only what mmghost.deploy imports is installed.
setup_runtime() {
  STACK=runtime
  local venv=$1 constraints=$2
  local stamp="$venv/.mmghost-setup-stamp" start=$SECONDS
  local want
  want=$(cat tools/setup_env.sh setup.py requirements/runtime.txt "$constraints" | sha256sum | cut -d' ' -f1)
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$venv/bin/python" -c 'import mmghost.deploy' 2>/dev/null; then
    log "environment $venv is up to date"
    return 0
  fi
  [[ -x "$venv/bin/python" ]] || { log "creating virtual environment $venv"; "$PYTHON311" -m venv "$venv"; }
  log "installing numpy, onnxruntime, openvino, opencv and mmdeploy's SDK (no torch)"
  # setuptools and wheel only to install mmghost itself (editable); mmdeploy-runtime (mmdeploy's C++ SDK) only
  # for the tests, which check mmghost.deploy against it.
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -c "$constraints" -r requirements/runtime.txt \
    'setuptools>=77,<82' wheel mmdeploy-runtime \
    2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
  "$venv/bin/python" -m pip install --disable-pip-version-check -q --no-build-isolation --no-deps -e . \
    2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
  if "$venv/bin/python" -c 'import torch' 2>/dev/null; then log "torch is importable in $venv: it must not be"; return 1; fi
  "$venv/bin/python" -c 'import mmghost.deploy, onnxruntime, openvino
print("onnxruntime", onnxruntime.__version__, "openvino", openvino.__version__)'
  echo "$want" > "$stamp"
  log "environment $venv is ready ($(( SECONDS - start )) s)"
}

setup_one() {
  case "$1" in
    torch213) setup_stack torch213 "$PYTHON311" .venv requirements/constraints.txt 'torch==2.13.0' '' ;;
    torch21) setup_stack torch21 "$PYTHON310" .venv-torch21 requirements/constraints-torch21.txt \
               'torch==2.1.2 torchvision==0.16.2' requirements/torch21.txt ;;
    # The deploy stack's tests run the torch-free runtime in .venv-runtime, so it comes with it.
    deploy) setup_stack deploy "$PYTHON310" .venv-deploy requirements/constraints-deploy.txt 'torch==2.1.2' requirements/deploy.txt
            setup_runtime .venv-runtime requirements/constraints-runtime.txt ;;
    runtime) setup_runtime .venv-runtime requirements/constraints-runtime.txt ;;
  esac
}

stacks=("$@")
[[ ${#stacks[@]} -eq 0 || "${stacks[0]}" == all ]] && stacks=(torch213 torch21 deploy)
for stack in "${stacks[@]}"; do
  case "$stack" in
    torch213|torch21|deploy|runtime) ;;
    *) echo "usage: tools/setup_env.sh [all|torch213|torch21|deploy|runtime]..." >&2; exit 2 ;;
  esac
done

# Two independent chains side by side: .venv, and the torch 2.1 venvs in order (deploy reuses torch21's mmcv
# wheel). On a fresh machine one chain downloads and installs while the other compiles mmcv, and the torch 2.1
# chain, whose compile is the shorter, sets up the deploy venvs while .venv still compiles
# (MMGHOST_SETUP_SERIAL=1: one after the other, as named). Each mmcv build then gets half the cores: two full-width
# builds at once took 993 s on 2 cores, against 453 + 365 s one after the other (two cold runs, measured). Each chain runs
# under `set -e` in its own background subshell; a chain that fails stops there, the other finishes, and the
# script exits 1. Log lines carry their stack's name.
chain_a=() chain_b=()
for stack in "${stacks[@]}"; do
  if [[ $stack == torch213 && -z ${MMGHOST_SETUP_SERIAL:-} ]]; then chain_a+=("$stack"); else chain_b+=("$stack"); fi
done
JOBS=$(nproc)
(( ${#chain_a[@]} && ${#chain_b[@]} && JOBS > 1 )) && JOBS=$(( JOBS / 2 ))
pids=()
if (( ${#chain_a[@]} )); then ( for stack in "${chain_a[@]}"; do setup_one "$stack"; done ) & pids+=($!); fi
if (( ${#chain_b[@]} )); then ( for stack in "${chain_b[@]}"; do setup_one "$stack"; done ) & pids+=($!); fi
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
(( status == 0 )) || echo "tools/setup_env.sh: a stack failed to set up (its [setup ...] lines above say which)" >&2
exit $status
