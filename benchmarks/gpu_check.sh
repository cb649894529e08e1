#!/usr/bin/env bash
# The whole GPU check of issue 14 as one command for a fresh GPU machine that has python3 with a CUDA torch,
# timm and the CUDA toolkit, but no registry access and no mmcv/mmengine/mmdet:
#
#   bash benchmarks/gpu_check.sh --prepare   # HERE (registry access): fill .whl/gpu, print the `run` tool call
#   bash benchmarks/gpu_check.sh             # THERE: install, build mmcv's CUDA ops, `pytest -m cuda`, benchmark
#   bash benchmarks/gpu_check.sh --dry-run   # on a CPU: the same stages, installs skipped when importable,
#                                            # the cuda tests skip, the benchmark runs tiny (< 3 minutes)
#
# Stages (each logged with its time; the summary JSON is rewritten after each, so a run cut short still says
# how far it got):
#   1. env       python, torch, CUDA, GPU; the wheelhouse's contents.
#   2. install   the pure-python wheels of .whl/gpu (mmengine 0.10.7, mmdet 3.3.0, pycocotools, shapely, ...)
#                into $SITE with pip --no-index --no-deps; skipped when they already import.
#   3. mmcv      mmcv 2.1.0 with ops: a carried prebuilt wheel matching this python, else compiled from the
#                carried sdist (MMCV_WITH_OPS=1 FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST from the GPU found,
#                MAX_JOBS = cores; under 5 minutes on 16 cores); skipped when `import mmcv.ops` works. A failed
#                or timed-out build falls back to mmcv-lite (no ops), so the backbone figures still come.
#                The built wheel is copied to $OUT when it fits what comes back (16 MiB): carry it in .whl/gpu
#                next time and this stage takes seconds.
#   4. tests     python -m pytest -m cuda tests (JUnit XML in $OUT).
#   5. benchmark benchmarks/gpu_benchmark.py with the time left as its budget (JSON in $OUT).
#
# Everything must end within GPU_CHECK_BUDGET_S (default 540 s = 9 min, inside the run tool's 10-minute limit;
# 170 s in a dry run):
# each stage gets a `timeout` from the time left, and a stage that cannot fit is skipped and says so.
#
# Environment: PYTHON (default python3; with --dry-run .venv/bin/python when it exists), OUT (results folder;
# default work_dirs/gpu_check), GPU_CHECK_BUDGET_S, GPU_BENCHMARK_ARGS (more arguments for gpu_benchmark.py,
# e.g. '--skip compile:GhostNetV3'), MAX_JOBS, CUDA_HOME (default /usr/local/cuda), SITE (install target,
# default /tmp/mmghost_site).
# Outputs in $OUT: gpu_check.json (stages + test counts + goals), gpu_check.log (everything printed),
# gpu_benchmark.json, cuda_tests.xml, mmcv_build.log, and the built mmcv wheel when small enough.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WHEELS=.whl/gpu
MMCV_VERSION=2.1.0

MODE=run
case "${1:-}" in
  --prepare) MODE=prepare ;;
  --dry-run) MODE=dry-run ;;
  '') ;;
  -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: bash benchmarks/gpu_check.sh [--prepare|--dry-run]" >&2; exit 2 ;;
esac

# ---------------------------------------------------------------------------------------------------------------
# --prepare: runs here, where pip can reach a registry.
# ---------------------------------------------------------------------------------------------------------------
# The GPU image (python 3.12) already has torch, timm, numpy, scipy, matplotlib, opencv-python-headless, pillow,
# pyyaml, rich, six, tqdm, packaging, psutil, ninja, pytest; these are what mmengine/mmcv/mmdet need beyond that.
# setuptools < 82: mmcv's setup.py and mmengine's `mmdet::` config lookup import pkg_resources.
PURE_WHEELS=(mmengine==0.10.7 mmdet==3.3.0 addict yapf platformdirs termcolor terminaltables shapely
             pycocotools 'setuptools>=77,<82')
if [[ $MODE == prepare ]]; then
  PY=${PYTHON:-python3}
  mkdir -p "$WHEELS"
  platforms=()
  for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
           manylinux2014_x86_64 manylinux1_x86_64 any; do platforms+=(--platform "$p"); done
  echo "[prepare] downloading wheels for CPython 3.12 / manylinux x86_64 into $WHEELS"
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --abi cp312 --abi abi3 --abi none "${platforms[@]}" -d "$WHEELS" "${PURE_WHEELS[@]}" \
    2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2) || exit 1
  if [[ ! -f $WHEELS/mmcv-$MMCV_VERSION.tar.gz ]]; then
    # pip runs mmcv's setup.py to read its metadata, and that imports torch: use a python that has it.
    sdist_py=$PY
    "$sdist_py" -c 'import torch' 2>/dev/null || sdist_py=.venv/bin/python
    echo "[prepare] downloading the mmcv $MMCV_VERSION source (metadata read with $sdist_py)"
    "$sdist_py" -m pip download -q --disable-pip-version-check --no-deps --no-binary=:all: --no-build-isolation \
      -d "$WHEELS" "mmcv==$MMCV_VERSION" 2> >(grep -v 'is ignored: it is neither' >&2) || exit 1
  fi
  # One version of each package, or pip refuses the whole install there.
  dups=$(ls "$WHEELS" | grep '\.whl$' | sed 's/-[0-9].*//' | tr 'A-Z-' 'a-z_' | sort | uniq -d)
  [[ -n $dups ]] && { echo "[prepare] more than one version of: $dups (delete the extra ones)" >&2; exit 1; }
  ls -l "$WHEELS"
  wheel_bytes=$(du -cb "$WHEELS"/* | tail -1 | cut -f1)
  tree_bytes=$(git ls-files -z -co --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  total=$(( wheel_bytes + tree_bytes ))
  awk -v w="$wheel_bytes" -v t="$tree_bytes" 'BEGIN { m = 1048576
    printf "[prepare] wheelhouse %.1f MiB + working tree %.1f MiB = %.1f MiB of the 64 MiB a run may carry\n",
           w / m, t / m, (w + t) / m }'
  (( total < 64 * 1048576 )) || { echo '[prepare] too large to carry' >&2; exit 1; }
  cat <<'EOF'
[prepare] ready. On a session that has the device, first `bash benchmarks/gpu_check.sh --dry-run` here, then
make this one call (the results come back under files_at; then give_back):
  run(command="bash benchmarks/gpu_check.sh", carry=[".whl/gpu"], timeout_s=600)
EOF
  exit 0
fi

# ---------------------------------------------------------------------------------------------------------------
# run / dry-run
# ---------------------------------------------------------------------------------------------------------------
# 9 minutes on the GPU machine; a dry run should take under 3.
if [[ $MODE == dry-run ]]; then BUDGET=${GPU_CHECK_BUDGET_S:-170}; else BUDGET=${GPU_CHECK_BUDGET_S:-540}; fi
OUT=${OUT:-work_dirs/gpu_check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SITE=${SITE:-/tmp/mmghost_site}
STAGES=$(mktemp /tmp/gpu_check_stages.XXXXXX)
if [[ $MODE == dry-run ]]; then
  default_py=python3
  [[ -x .venv/bin/python ]] && default_py=.venv/bin/python
  PY=${PYTHON:-$default_py}
else
  PY=${PYTHON:-python3}
fi
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
TEE_PID=$!
# The repo (mmghost, tests, benchmarks) and, on the GPU machine, what stages 2-3 install into $SITE.
[[ $MODE == run ]] && PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

log() { printf '[gpu_check %s +%ds] %s\n' "$(date -u +%H:%M:%S)" "$SECONDS" "$*"; }
left() { echo $(( BUDGET - SECONDS )); }
# stage NAME STATUS START_SECONDS DETAIL: record a finished stage and rewrite the summary JSON.
stage() {
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$(( SECONDS - $3 ))" "${4//$'\t'/ }" >> "$STAGES"
  log "stage $1: $2 after $(( SECONDS - $3 )) s${4:+ ($4)}"
  summary
}
summary() {
  "$PY" - "$STAGES" "$OUT" "$MODE" "$BUDGET" "$SECONDS" <<'EOF' || echo '[gpu_check] could not write gpu_check.json'
import json, os, sys, xml.etree.ElementTree as ET
stages_file, out, mode, budget, elapsed = sys.argv[1:]
stages = []
for line in open(stages_file):
    name, status, seconds, detail = (line.rstrip('\n').split('\t') + [''])[:4]
    stages.append(dict(name=name, status=status, seconds=int(seconds), detail=detail))
data = dict(schema='mmghost-gpu-check/1', dry_run=mode == 'dry-run', budget_s=int(budget), elapsed_s=int(elapsed),
            stages=stages)
xml = os.path.join(out, 'cuda_tests.xml')
if os.path.exists(xml):
    try:
        root = ET.parse(xml).getroot()
        suite = root if root.tag == 'testsuite' else root.find('testsuite')
        counts = {k: int(suite.get(k, 0)) for k in ('tests', 'failures', 'errors', 'skipped')}
        counts['passed'] = counts['tests'] - counts['failures'] - counts['errors'] - counts['skipped']
        cases = []
        for case in suite.iter('testcase'):
            status = 'passed'
            for tag in ('failure', 'error', 'skipped'):
                node = case.find(tag)
                if node is not None:
                    status = dict(failure='failed', error='error', skipped='skipped')[tag]
                    reason = (node.get('message') or '')[:300]
                    break
            cases.append(dict(name=f"{case.get('classname')}::{case.get('name')}", status=status,
                              seconds=float(case.get('time', 0)), **({'reason': reason} if status != 'passed' else {})))
        data['tests'] = dict(counts, cases=cases)
    except Exception as exc:  # a killed pytest can leave no or half a file
        data['tests'] = dict(unreadable=repr(exc))
bench = os.path.join(out, 'gpu_benchmark.json')
if os.path.exists(bench):
    try:
        b = json.load(open(bench))
        data['benchmark'] = dict(file='gpu_benchmark.json', complete=b.get('complete'), goals=b.get('goals'),
                                 skipped=b.get('skipped'), errors=b.get('errors'))
    except ValueError as exc:
        data['benchmark'] = dict(unreadable=repr(exc))
tmp = os.path.join(out, 'gpu_check.json.tmp')
json.dump(data, open(tmp, 'w'), indent=1)
os.replace(tmp, os.path.join(out, 'gpu_check.json'))
EOF
}
# min A B
min() { (( $1 < $2 )) && echo "$1" || echo "$2"; }

log "mode $MODE, budget ${BUDGET} s, python $PY, results in $OUT"

# 1. env ----------------------------------------------------------------------------------------------------------
t=$SECONDS
if [[ $MODE == run ]] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader || true
fi
env_line=$("$PY" -c 'import sys, torch
cuda = torch.cuda.is_available()
gpu = ", {} sm_{}{}".format(torch.cuda.get_device_name(), *torch.cuda.get_device_capability()) if cuda else ""
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, available {cuda}{gpu}")
' 2>&1)
rc=$?
log "$env_line"
if (( rc != 0 )); then stage env failed "$t" "torch does not import: $env_line"; exit 1; fi
if [[ $MODE == run && $env_line != *"available True"* ]]; then
  stage env failed "$t" "no CUDA device (use --dry-run on a CPU machine)"; exit 1
fi
if [[ $MODE == run && $env_line != "python 3.12"* ]]; then
  log "warning: the wheelhouse holds CPython 3.12 wheels (shapely, pycocotools); this is ${env_line%%,*}"
fi
[[ -d $WHEELS ]] && log "wheelhouse $WHEELS: $(ls "$WHEELS" | wc -l) files, $(du -sh "$WHEELS" | cut -f1)"
stage env ok "$t" "$env_line"

# 2. install the pure-python packages -------------------------------------------------------------------------------
t=$SECONDS
# mmdet itself cannot be imported before mmcv is there (stage 3): its version is read from its metadata.
check_py='import importlib.metadata as m, mmengine, pycocotools.coco, shapely, terminaltables, addict, yapf
assert mmengine.__version__ == "0.10.7" and m.version("mmdet") == "3.3.0", (mmengine.__version__, m.version("mmdet"))'
if "$PY" -c "$check_py" 2>/dev/null; then
  stage install skipped "$t" 'mmengine 0.10.7, mmdet 3.3.0 and their needs already import'
elif [[ $MODE == dry-run ]]; then
  stage install failed "$t" "$PY lacks mmengine/mmdet and a dry run installs nothing: use PYTHON=.venv/bin/python"
elif ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  stage install failed "$t" \
    "no wheels in $WHEELS: run 'bash benchmarks/gpu_check.sh --prepare' where pip works and carry $WHEELS"
else
  wheels=()
  for w in "$WHEELS"/*.whl; do [[ $(basename "$w") == mmcv-* ]] || wheels+=("$w"); done
  mkdir -p "$SITE"
  if "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
       --upgrade --target "$SITE" "${wheels[@]}"; then
    if err=$("$PY" -c "$check_py" 2>&1); then
      stage install ok "$t" "${#wheels[@]} wheels into $SITE"
    else
      stage install failed "$t" "installed but does not import: $(echo "$err" | tail -1)"
    fi
  else
    stage install failed "$t" 'pip install --no-index of the wheelhouse failed'
  fi
fi

# 3. mmcv with CUDA ops --------------------------------------------------------------------------------------------
t=$SECONDS
mmcv_ops_ok() { "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; }
install_wheel() {  # install_wheel FILE: into $SITE, replacing any mmcv there
  rm -rf "$SITE"/mmcv "$SITE"/mmcv-*.dist-info "$SITE"/mmcv_lite-*.dist-info
  mkdir -p "$SITE" && "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target "$SITE" "$1"
}
pyver=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
# A wheel an earlier run built (copied back from its $OUT, whole or in parts) saves the build; it only loads
# beside the torch it was built against, else the build runs as if it were not there.
prebuilt=$(ls "$WHEELS"/mmcv-$MMCV_VERSION-"$pyver"-*.whl 2>/dev/null | head -1)
parts=$(ls "$WHEELS"/mmcv-$MMCV_VERSION-"$pyver"-*.whl.part* 2>/dev/null)
if [[ -z $prebuilt && -n $parts ]]; then
  prebuilt=/tmp/$(basename "${parts%%$'\n'*}" | sed 's/\.part[0-9]*$//')
  cat $parts > "$prebuilt"
fi
if mmcv_ops_ok; then
  stage mmcv skipped "$t" "mmcv $MMCV_VERSION with ops already imports"
elif [[ $MODE == dry-run ]]; then
  stage mmcv failed "$t" "no mmcv $MMCV_VERSION with ops in $PY, and a dry run builds nothing"
elif [[ -n $prebuilt ]] && install_wheel "$prebuilt" && mmcv_ops_ok; then
  stage mmcv ok "$t" "prebuilt $(basename "$prebuilt")"
elif [[ ! -f $WHEELS/mmcv-$MMCV_VERSION.tar.gz ]]; then
  stage mmcv failed "$t" "no $WHEELS/mmcv-$MMCV_VERSION.tar.gz: run --prepare and carry $WHEELS"
else
  arch=$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')
  # Leave at least 200 s for the tests and the benchmark; mmcv has been seen to build in under 300 s on 16 cores.
  limit=$(min 420 $(( $(left) - 200 )))
  if (( limit < 120 )); then
    stage mmcv failed "$t" "only $(left) s left: no time to build"
  else
    jobs=${MAX_JOBS:-$(nproc)}
    src=/tmp/mmcv_src/mmcv-$MMCV_VERSION
    rm -rf /tmp/mmcv_src /tmp/mmcv_wheel && mkdir -p /tmp/mmcv_src /tmp/mmcv_wheel
    tar -xzf "$WHEELS/mmcv-$MMCV_VERSION.tar.gz" -C /tmp/mmcv_src
    # mmcv 2.1.0's CUDA helpers include <THC/THCAtomics.cuh>, a header newer torch releases no longer ship
    # (torch 2.13's include/ has no THC/); its replacement since torch 1.11 is <ATen/cuda/Atomic.cuh>. Checked
    # here: nms/focal-loss/roi-align kernels compile with nvcc 13.0 against torch 2.13's headers that way.
    torch_include=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))')
    if [[ ! -f $torch_include/THC/THCAtomics.cuh ]]; then
      patched=$(grep -rl '#include <THC/THCAtomics.cuh>' "$src/mmcv/ops/csrc")
      sed -i 's|#include <THC/THCAtomics.cuh>|#include <ATen/cuda/Atomic.cuh>|' $patched
      log "this torch has no THC/THCAtomics.cuh: ATen/cuda/Atomic.cuh included instead ($(echo "$patched" | wc -l) files)"
    fi
    log "building mmcv $MMCV_VERSION with CUDA ops for sm_${arch/./}, $jobs jobs (limit ${limit} s; mmcv_build.log)"
    MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=$arch MAX_JOBS=$jobs CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} \
      timeout "$limit" "$PY" -m pip wheel -v --disable-pip-version-check --no-index --no-deps --no-build-isolation \
      --no-cache-dir -w /tmp/mmcv_wheel "$src" > "$OUT/mmcv_build.log" 2>&1
    rc=$?
    built=$(ls /tmp/mmcv_wheel/mmcv-*.whl 2>/dev/null | head -1)
    if (( rc == 0 )) && [[ -n $built ]] && install_wheel "$built" && mmcv_ops_ok; then
      # Files come back from $OUT up to 16 MiB each, 8 files in all: a larger wheel comes back in parts
      # (cat mmcv-*.whl.part* into one file, or leave the parts in .whl/gpu: this stage joins them).
      size=$(stat -c %s "$built")
      if (( size <= 16 * 1048576 )); then
        cp "$built" "$OUT/"; note="; wheel copied to \$OUT ($(( size / 1048576 )) MiB)"
      elif (( size <= 3 * 16 * 1048576 )); then
        split -b 16000000 -d -a 1 "$built" "$OUT/$(basename "$built").part"
        note="; wheel $(( size / 1048576 )) MiB, in $(ls "$OUT"/*.part* | wc -l) parts in \$OUT"
      else
        note="; wheel $(( size / 1048576 )) MiB, too large to come back"
      fi
      stage mmcv ok "$t" "built for sm_${arch/./}$note"
    else
      why="exit $rc"; (( rc == 124 )) && why="timed out after ${limit} s"
      log "mmcv build failed ($why); last lines of mmcv_build.log:"
      tail -n 40 "$OUT/mmcv_build.log"
      # mmcv-lite (python only, seconds) keeps the backbones importable: the backbone figures still come.
      rm -rf /tmp/mmcv_wheel && mkdir -p /tmp/mmcv_wheel
      if MMCV_WITH_OPS=0 timeout 120 "$PY" -m pip wheel -q --disable-pip-version-check --no-index --no-deps \
           --no-build-isolation --no-cache-dir -w /tmp/mmcv_wheel "$WHEELS/mmcv-$MMCV_VERSION.tar.gz" \
           >> "$OUT/mmcv_build.log" 2>&1 && install_wheel "$(ls /tmp/mmcv_wheel/*.whl | head -1)"; then
        stage mmcv failed "$t" "CUDA ops build $why; installed mmcv-lite (no ops): detector tests/training will fail"
      else
        stage mmcv failed "$t" "CUDA ops build $why; mmcv-lite fallback failed too"
      fi
    fi
  fi
fi

# Say early (it takes seconds) whether the detectors will build; the stages below run either way.
if (( $(left) >= 60 )); then
  if err=$("$PY" -c 'import mmdet.models, mmghost' 2>&1); then
    log "mmdet.models and mmghost import"
  else
    log "warning: mmdet.models / mmghost do not import: $(echo "$err" | tail -1)"
  fi
fi

# 4. the cuda tests -------------------------------------------------------------------------------------------------
t=$SECONDS
# Keep 150 s for the benchmark (60 s in a dry run).
reserve=150; [[ $MODE == dry-run ]] && reserve=60
limit=$(min 150 $(( $(left) - reserve )))
if (( limit < 30 )); then
  stage tests skipped "$t" "only $(left) s left"
else
  log "python -m pytest -m cuda tests (limit ${limit} s)"
  timeout "$limit" "$PY" -m pytest -m cuda tests -q -p no:cacheprovider --continue-on-collection-errors \
    -o addopts='-rA --durations=10' --junitxml="$OUT/cuda_tests.xml"
  rc=$?
  case $rc in
    0) status=ok ;;
    124) status=failed; rc="timed out after ${limit} s" ;;
    *) status=failed ;;
  esac
  stage tests "$status" "$t" "pytest exit $rc"
fi

# 5. the benchmark --------------------------------------------------------------------------------------------------
t=$SECONDS
limit=$(( $(left) - 5 ))
if (( limit < 30 )); then
  stage benchmark skipped "$t" "only $(left) s left"
else
  # Sections are not started once fewer than ~budget seconds remain; `timeout` stops one that overruns, and
  # the JSON, rewritten after every case, keeps what was measured. A CPU dry run shares 2 cores with whatever else
  # runs (a test suite), where one section can overrun its estimate by far more than on a GPU: more slack there.
  slack=20; [[ $MODE == dry-run ]] && slack=60
  bench_args=(--out "$OUT/gpu_benchmark.json" --budget-s $(( limit - slack )))
  [[ $MODE == dry-run ]] && bench_args+=(--dry-run)
  # shellcheck disable=SC2206  # word-split on purpose: extra benchmark arguments, e.g. '--skip compile:GhostNetV3'
  [[ -n ${GPU_BENCHMARK_ARGS:-} ]] && bench_args+=($GPU_BENCHMARK_ARGS)
  log "python benchmarks/gpu_benchmark.py ${bench_args[*]} (limit ${limit} s)"
  timeout "$limit" "$PY" benchmarks/gpu_benchmark.py "${bench_args[@]}"
  rc=$?
  case $rc in
    0) status=ok ;;
    124) status=failed; rc="timed out after ${limit} s (partial JSON kept)" ;;
    *) status=failed ;;
  esac
  stage benchmark "$status" "$t" "exit $rc"
fi

failed=$(cut -f2 "$STAGES" | grep -c '^failed$')
rm -f "$STAGES"
log "done in $SECONDS s: $failed stage(s) failed; results in $OUT (gpu_check.json, gpu_benchmark.json, gpu_check.log ...)"
exec >&- 2>&-
wait "$TEE_PID" 2>/dev/null  # the log is complete before the results are collected
(( failed == 0 ))
