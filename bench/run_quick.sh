#!/usr/bin/env bash
# Every bench in its quick variant: proves they run (CI calls this), never judges the timings.
# Exit status is non-zero only when a script crashes. Each script prints one JSON line.
#   bash bench/run_quick.sh            # results on stdout only
#   bash bench/run_quick.sh --record   # also write them into bench/README.md (quick column)
# PYTHON selects the interpreter (default: python on PATH, e.g. an activated venv).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
record="--no-record"
if [ "${1:-}" = "--record" ]; then
  record=""
fi
failed=0
start=$SECONDS
for bench in startup ingest latency idle tui memory hooks history scale run; do
  t0=$SECONDS
  # stdout (the JSON line) passes through; stderr is prefixed with the bench's name.
  # shellcheck disable=SC2086
  { "$PY" "bench/$bench.py" --quick $record 2>&1 1>&3 | sed "s/^/[$bench] /" >&2; } 3>&1
  if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    echo "bench/$bench.py --quick FAILED" >&2
    failed=1
  fi
  echo "[$bench] $((SECONDS - t0))s" >&2
done
echo "quick benches: $((SECONDS - start))s in total" >&2
exit "$failed"
