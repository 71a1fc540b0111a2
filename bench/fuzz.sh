#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for RUNS executions each (default 1,000,000), with cargo-fuzz on
# the stable toolchain (no sanitizer: `-s none`), and prints executions, speed, coverage and
# crashes per target. A crash leaves its input in fuzz/artifacts/<target>/ and fails the script;
# turn it into a regression test before fixing it.
#
#   bench/fuzz.sh                  # all targets, 1M runs each (about 10 minutes on 2 cores)
#   RUNS=20000 bench/fuzz.sh lb_head
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
RUNS=${RUNS:-1000000}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(config config_seed004 push_body lb_head)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# Seeds: the shipped examples (seed-004 files without their `version` line: the target adds it),
# and the hand-written bodies and heads in seeds/.
mkdir -p corpus/config corpus/config_seed004 corpus/push_body corpus/lb_head
cp ../examples/*.yaml ../examples/openstack/*.yaml corpus/config/ 2>/dev/null || true
for f in ../examples/libvirt/*.yaml; do
  grep -v '^version:' "$f" > "corpus/config_seed004/$(basename "$f")"
done
cp seeds/push_body/* corpus/push_body/
cp seeds/lb_head/* corpus/lb_head/

cargo fuzz build -s none -O
printf '%-16s %12s %10s %8s %8s\n' target executions exec/s cov crashes
status=0
for t in "${TARGETS[@]}"; do
  log=$(mktemp)
  rm -rf "artifacts/$t"
  set +e
  cargo fuzz run -s none -O "$t" "corpus/$t" -- -runs="$RUNS" -print_final_stats=1 -max_len=65536 \
    -timeout=10 >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -oP 'stat::number_of_executed_units:\s*\K\d+' "$log" || echo 0)
  speed=$(grep -oP 'stat::average_exec_per_sec:\s*\K\d+' "$log" || echo 0)
  cov=$(grep -oP '#\d+\s+DONE\s+cov: \K\d+' "$log" || grep -oP 'cov: \K\d+' "$log" | tail -1 || echo "?")
  crashes=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
  printf '%-16s %12s %10s %8s %8s\n' "$t" "$execs" "$speed" "$cov" "$crashes"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    status=1
    echo "--- $t failed (exit $rc); the log's end:"; tail -30 "$log"
  fi
  rm -f "$log"
done
exit $status
