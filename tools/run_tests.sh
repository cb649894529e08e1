#!/usr/bin/env bash
# Runs the test suite in each stack's venv (default: all three), all of them even if one fails, then prints one
# summary line per stack. Exit status: 0 only if every stack passed; pytest's "no tests collected" (5) fails.
#
#   tools/run_tests.sh [--stack torch213|torch21|deploy]... [pytest arguments...]
#
# torch213 and torch21 run tests/ except tests/deploy_stack; deploy (.venv-deploy, mmdeploy's pinned onnx and
# protobuf) runs tests/deploy_stack only: tools/deploy.py, the ONNX accuracy checks, and the torch-free runtime
# in .venv-runtime.
#
# The stacks run as two chains side by side, torch21 beside torch213 followed by deploy: most tests are one
# process on one core (subprocesses with OMP_NUM_THREADS=1, imports, small tensors), so one suite leaves the second
# core of a 2-core machine mostly idle. Each output line then starts with its stack's name. Tests that would meet
# across the two runs take a free port from the OS and lock the in-tree wheel build. MMGHOST_TEST_SERIAL=1 runs the
# stacks one after the other, without the prefix.
set -uo pipefail
cd "$(dirname "$0")/.."

stacks=()
while [[ $# -gt 0 && "$1" == --stack ]]; do stacks+=("$2"); shift 2; done
[[ ${#stacks[@]} -eq 0 ]] && stacks=(torch213 torch21 deploy)

declare -A venvs=([torch213]=.venv [torch21]=.venv-torch21 [deploy]=.venv-deploy)
for stack in "${stacks[@]}"; do
  [[ -n "${venvs[$stack]:-}" ]] || { echo "unknown stack $stack (torch213, torch21, deploy)" >&2; exit 2; }
done
results=$(mktemp -d /tmp/mmghost_tests.XXXXXX)
trap 'rm -rf "$results"' EXIT

# run_stack STACK PREFIX [pytest arguments...]: one stack's suite; its summary line goes to $results/STACK.
run_stack() {
  local stack=$1 prefix=$2 venv=${venvs[$1]} start=$SECONDS rc
  shift 2
  local paths=(tests --ignore=tests/deploy_stack)
  [[ $stack == deploy ]] && paths=(tests/deploy_stack)
  echo "=== tests in $venv ($stack) ==="
  if [[ $prefix == yes ]]; then
    "$venv/bin/python" -m pytest "${paths[@]}" "$@" 2>&1 | sed -u "s/^/[$stack] /"
    rc=${PIPESTATUS[0]}
  else
    "$venv/bin/python" -m pytest "${paths[@]}" "$@"
    rc=$?
  fi
  [[ $rc -eq 5 ]] && echo "$stack: pytest collected no tests: that is a failure"
  echo "$stack ($venv): pytest exit $rc after $(( SECONDS - start )) s" > "$results/$stack"
  return "$rc"
}

chain_a=() chain_b=()
for stack in "${stacks[@]}"; do
  if [[ $stack == torch21 && -z ${MMGHOST_TEST_SERIAL:-} ]]; then chain_b+=("$stack"); else chain_a+=("$stack"); fi
done
prefix=no
(( ${#chain_a[@]} && ${#chain_b[@]} )) && prefix=yes
# run_chain STACK...: each stack of a chain runs even when one before it fails (the summary lists each).
run_chain() {
  local stack status=0
  for stack in "$@"; do run_stack "$stack" "$prefix" "${pytest_args[@]}" || status=1; done
  return $status
}
pytest_args=("$@")
pids=()
if (( ${#chain_a[@]} )); then run_chain "${chain_a[@]}" & pids+=($!); fi
if (( ${#chain_b[@]} )); then run_chain "${chain_b[@]}" & pids+=($!); fi
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for stack in "${stacks[@]}"; do
  if [[ -f $results/$stack ]]; then cat "$results/$stack"; else echo "$stack: did not run"; status=1; fi
done
exit $status
