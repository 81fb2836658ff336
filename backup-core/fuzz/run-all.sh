#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 390) each, two at a time,
# single-process (one job per target), and prints executions and crashes.
# Usage: backup-core/fuzz/run-all.sh [SECONDS]
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-390}
targets=(key manifest schedule duration chunk_list pack_index mongo_archive backupd_config api_bodies)
mkdir -p fuzz/logs
run() {
    local t=$1 extra=()
    mkdir -p "fuzz/corpus/$t"
    [ -d "fuzz/seeds/$t" ] && extra+=("fuzz/seeds/$t")
    local flags=(-max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=64 -print_final_stats=1)
    [ "$t" = mongo_archive ] && flags+=(-dict=fuzz/mongo_archive.dict)
    cargo +nightly fuzz run -s none "$t" "fuzz/corpus/$t" "${extra[@]}" -- "${flags[@]}" \
        > "fuzz/logs/$t.log" 2>&1
    echo "$t: exit $? runs $(grep -o 'stat::number_of_executed_units: *[0-9]*' "fuzz/logs/$t.log" | grep -o '[0-9]*$') crashes $(ls fuzz/artifacts/$t 2>/dev/null | wc -l)"
}
i=0
for t in "${targets[@]}"; do
    run "$t" &
    i=$((i + 1))
    if (( i % 2 == 0 )); then wait; fi
done
wait
