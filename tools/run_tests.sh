#!/usr/bin/env bash
# Runs the test suite in each stack's venv (default: both), all of them even if one fails, then prints one
# summary line per stack. Exit status: 0 only if every stack passed; pytest's "no tests collected" (5) fails.
#
#   tools/run_tests.sh [--stack torch213|torch21|deploy]... [pytest arguments...]
#
# torch213 and torch21 run tests/ except tests/deploy_stack; deploy (.venv-deploy, mmdeploy's pinned onnx and
# protobuf) runs tests/deploy_stack only: tools/deploy.py, the ONNX accuracy checks, and the torch-free runtime
# in .venv-runtime.
set -uo pipefail
cd "$(dirname "$0")/.."

stacks=()
while [[ $# -gt 0 && "$1" == --stack ]]; do stacks+=("$2"); shift 2; done
[[ ${#stacks[@]} -eq 0 ]] && stacks=(torch213 torch21 deploy)

declare -A venvs=([torch213]=.venv [torch21]=.venv-torch21 [deploy]=.venv-deploy)
summary=() status=0
for stack in "${stacks[@]}"; do
  venv=${venvs[$stack]:-}
  [[ -z "$venv" ]] && { echo "unknown stack $stack (torch213, torch21, deploy)" >&2; exit 2; }
  echo "=== tests in $venv ($stack) ==="
  start=$SECONDS
  if [[ $stack == deploy ]]; then
    "$venv/bin/python" -m pytest tests/deploy_stack "$@"
  else
    "$venv/bin/python" -m pytest tests --ignore=tests/deploy_stack "$@"
  fi
  rc=$?
  [[ $rc -eq 5 ]] && echo "$stack: pytest collected no tests: that is a failure"
  summary+=("$stack ($venv): pytest exit $rc after $(( SECONDS - start )) s")
  [[ $rc -ne 0 ]] && status=1
done
printf '%s\n' "${summary[@]}"
exit $status
