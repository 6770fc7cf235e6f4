#!/usr/bin/env bash
# Every MAOS benchmark, then one table: each figure beside its in-run baseline and beside
# Redis doing the same job (when a redis-server can be had; as root on Debian it is
# installed with apt). Run from the repository root:
#
#     bash benches/run-all.sh            # full runs, a few minutes
#     QUICK=1 bash benches/run-all.sh    # a tenth of the iterations
#
# The per-bench tables are printed as they run; the summary table comes last.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
[ "${QUICK:-0}" = 1 ] && quick=(--quick)
summary=$(mktemp "${TMPDIR:-/tmp}/maos-bench-summary.XXXXXX")
export MAOS_BENCH_SUMMARY=$summary

echo "== building (release)"
cargo build --quiet --release -p maos-cli
cargo bench --quiet -p maos-coordination --no-run

redis_port=6399
redis_started=0
if ! command -v redis-server >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing redis-server for the comparison"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null 2>&1 || true
fi
if command -v redis-server >/dev/null; then
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >/dev/null
    redis_started=1
    trap 'redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true' EXIT
    export MAOS_REDIS="redis://127.0.0.1:$redis_port"
    sleep 0.3
else
    echo "== no redis-server: the Redis column stays empty"
fi

# Benches that create and delete tens of thousands of files (channels, tasks) go last, with
# a pause after each: ext4 creates run ~20x slower for tens of seconds after a mass delete,
# which would show up in the next bench's figures.
for bench in locks journal redis merge channels tasks; do
    echo
    echo "== $bench"
    cargo bench --quiet -p maos-coordination --bench "$bench" -- "${quick[@]}"
    case $bench in channels) [ "${QUICK:-0}" = 1 ] || sleep 30 ;; esac
done

echo
echo "== editor hooks"
cargo bench --quiet -p maos-cli --bench hooks -- "${quick[@]}"

echo
echo "== summary"
python3 benches/table.py "$summary"
rm -f "$summary"
