#!/usr/bin/env bash
# Runs every test binary of the workspace many times while busy loops keep the CPUs busy, to
# find tests that fail at random (a test that fails one run in twenty teaches everyone to
# rerun). Prints one line per binary and a closing `N passed, N failed` (runs, not tests).
#
#   scripts/stress-tests.sh [RUNS] [NAME-FILTER]
#   BUSY=3 scripts/stress-tests.sh 20            # three busy loops beside the tests
#   FDRPC_TEST_SERVER=blocking scripts/stress-tests.sh 10 adversary
#
# RUNS defaults to 20, BUSY to the number of CPUs. A failing run's output is kept in
# target/stress/<binary>.<run>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
filter="${2:-}"
busy="${BUSY:-$(nproc)}"
# A proc-macro crate's tests link std dynamically: cargo finds it in the sysroot for them.
export LD_LIBRARY_PATH="$(rustc --print target-libdir)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# Every test executable `cargo test` would run, with its package's directory (where cargo
# runs it). The trybuild tests compile code rather than race: they are left out.
mapfile -t exes < <(cargo test --no-run --message-format=json -q 2>/dev/null |
  python3 -c '
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        if m["target"]["name"] == "compiletest":
            continue
        print(m["executable"] + "\t" + os.path.dirname(m["manifest_path"]))
' | sort -u)

loops=()
cleanup() { for p in "${loops[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
for _ in $(seq "$busy"); do
  (while :; do :; done) &
  loops+=("$!")
done

mkdir -p target/stress
passed=0
failed=0
for entry in "${exes[@]}"; do
  exe="${entry%%$'\t'*}"
  dir="${entry#*$'\t'}"
  name="$(basename "$exe")"
  [[ -z "$filter" || "$name" == *"$filter"* ]] || continue
  bad=0
  for i in $(seq "$runs"); do
    log="target/stress/$name.$i.log"
    if (cd "$dir" && CARGO_MANIFEST_DIR="$dir" timeout 600 "$exe" -q) >"$log" 2>&1; then
      rm -f "$log"
      passed=$((passed + 1))
    else
      bad=$((bad + 1))
      failed=$((failed + 1))
    fi
  done
  echo "$name: $((runs - bad))/$runs runs passed"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
