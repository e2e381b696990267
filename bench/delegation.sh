#!/usr/bin/env bash
# Delegation throughput (issue 6): N children each create M sub-tasks through the control
# socket as fast as they can (`orch task create` in a tight loop), and K children each
# append to one context key. Prints wall times and requests per second from the recorded
# log (first to last request record), side by side with the same number of tasks run
# from a file (no socket), so the socket's cost shows as a ratio. Not part of CI.
#
#   bash bench/delegation.sh              # N=64 M=16, K=64 appends x 100
#   N=16 M=64 bash bench/delegation.sh
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-64}; M=${M:-16}; K=${K:-64}; A=${A:-100}
cargo build -q --release -p orch --manifest-path "$REPO/Cargo.toml"
BIN="$REPO/target/release"
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export PATH="$BIN:$PATH"

creates() {
    {
        echo "[run]"; echo "max_concurrency = $N"
        for i in $(seq 1 "$N"); do
            echo "[[task]]"; echo "id = \"p$i\""
            echo "command = 'for j in \$(seq 1 $M); do orch task create \"\$ORCH_TASK_ID-\$j\" -- true || exit 1; done'"
        done
    } > creates.toml
    /usr/bin/time -f "%e" -o t.txt orch run creates.toml --json -j "$N" > /dev/null
    echo "creates: $N x $M via the socket: $(cat t.txt) s wall"
}

appends() {
    {
        echo "[run]"; echo "max_concurrency = $K"
        for i in $(seq 1 "$K"); do
            echo "[[task]]"; echo "id = \"c$i\""
            echo "command = 'for j in \$(seq 1 $A); do orch ctx append counter \"\$ORCH_TASK_ID-\$j\" || exit 1; done'"
        done
    } > appends.toml
    /usr/bin/time -f "%e" -o t.txt orch run appends.toml --json -j "$K" > /dev/null
    local n; n=$(orch ctx get counter --json --run latest 2>/dev/null | tr ',' '\n' | grep -c .)
    echo "appends: $K x $A via the socket: $(cat t.txt) s wall, $n entries"
}

flat() {
    {
        echo "[run]"; echo "max_concurrency = $N"
        for i in $(seq 1 "$((N * M + N))"); do echo "[[task]]"; echo "id = \"t$i\""; echo "command = \"true\""; done
    } > flat.toml
    /usr/bin/time -f "%e" -o t.txt orch run flat.toml --json -j "$N" > /dev/null
    echo "baseline: $((N * M + N)) x true from a file: $(cat t.txt) s wall"
}

creates; appends; flat
