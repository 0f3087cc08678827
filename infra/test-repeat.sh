#!/usr/bin/env bash
# Runs pytest RUNS times from this checkout (each run with its own database, topics and cache,
# as every run has) and prints every failed or erroring test with its run number, then a
# summary; exits 1 if any run failed. Usage: test-repeat.sh RUNS [pytest arguments...]
source "$(dirname "$0")/lib.sh"

runs=${1:?usage: test-repeat.sh RUNS [pytest arguments...]}
shift
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, got '$runs'"
logs=$STATE_DIR/test-repeat/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$logs"
failed_runs=0
for ((run = 1; run <= runs; run++)); do
    log=$logs/run-$run.log
    started=$SECONDS
    if "$REPO_ROOT/.venv/bin/python" -m pytest -p no:cacheprovider -rfE "$@" >"$log" 2>&1; then
        say "run $run/$runs passed in $((SECONDS - started)) s: $(tail -n 1 "$log")"
    else
        failed_runs=$((failed_runs + 1))
        say "run $run/$runs FAILED in $((SECONDS - started)) s: $(tail -n 1 "$log") (log: $log)"
        grep -E '^(FAILED|ERROR) ' "$log" | sed "s/^/[run $run] /" >&2 || true
    fi
done
say "$((runs - failed_runs)) of $runs runs passed; logs in $logs"
[ "$failed_runs" -eq 0 ]
