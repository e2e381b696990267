#!/usr/bin/env bash
# Where orch's time goes on workload 1 of bench/peers.sh (2,000 x /bin/true at -j2):
# `perf record -g` (dwarf call graphs, children included) of one `orch run`, bucketed by
# bench/perf_breakdown.py, plus a syscall count per task of orch's main thread (strace).
# Needs perf (and strace for the second part). Not part of CI.
#
#   bash bench/profile.sh            # after bench/peers.sh has built target/release/orch
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ORCH="$REPO/target/release/orch"
WORK="${WORK:-$(mktemp -d /tmp/orch-profile.XXXXXX)}"
[ -x "$ORCH" ] || (cd "$REPO" && cargo build -q --release -p orch)
python3 "$REPO/bench/gen.py" flat "$WORK/flat" 2000

echo "## perf record -g: orch run of 2,000 x /bin/true at -j2"
perf record -q -o "$WORK/perf.data" -g --call-graph dwarf,16384 -F 2000 -- \
    "$ORCH" run "$WORK/flat/flat.toml" -j 2 --json --store "$WORK/store" >"$WORK/summary.json"
pid=$(perf script -i "$WORK/perf.data" -F pid 2>/dev/null | head -1 | tr -d ' ' || true)
perf script -i "$WORK/perf.data" -F comm,pid,tid,ip,sym 2>/dev/null | python3 "$REPO/bench/perf_breakdown.py" "$pid"
echo
echo "top self symbols of the orch process:"
perf report -i "$WORK/perf.data" --no-children --pid "$pid" --sort dso,sym --stdio -g none --percent-limit 0.5 2>/dev/null |
    grep -v '^#' | grep -v '^$' | head -25

if command -v strace >/dev/null; then
    echo
    echo "## syscalls of orch's main thread per task (strace -ff; slows the run, counts are exact)"
    rm -rf "$WORK/st" "$WORK/store2" && mkdir "$WORK/st"
    strace -ff -o "$WORK/st/tr" "$ORCH" run "$WORK/flat/flat.toml" -j 2 --json --store "$WORK/store2" >/dev/null
    main=$(ls -S "$WORK/st" | head -1 || true)
    sed -E 's/^([a-z0-9_]+)\(.*/\1/' "$WORK/st/$main" | grep -E '^[a-z0-9_]+$' | sort | uniq -c | sort -rn |
        awk '{printf "%-16s %6d  %.2f/task\n", $2, $1, $1/2000; t+=$1} END {printf "%-16s %6d  %.2f/task\n", "total", t, t/2000}'
    echo "fdatasync by the group-commit thread: $(cat "$WORK"/st/tr.* | grep -c '^fdatasync') (under strace)"
fi
echo "(files in $WORK)"
