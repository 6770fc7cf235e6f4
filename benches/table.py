"""Prints the one summary table of benches/run-all.sh from the JSON lines the benches wrote."""
import json
import sys

rows = {}
memory = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["row"] == "peak memory":
        memory[r["bench"]] = r["peak_kib"] / 1024
    else:
        rows[(r["bench"], r["row"])] = r


def cell(bench, row, what="p50_us"):
    r = rows.get((bench, row))
    if r is None:
        return None
    return r[what]


def fmt(v, unit="µs"):
    if v is None:
        return "–"
    if unit == "µs":
        return f"{v / 1000:.1f} ms" if v >= 10_000 else f"{v:.1f} µs"
    return f"{v:,.0f}/s"


JOBS = [
    # (job, bench, maos row, baseline bench, baseline row, redis row, what)
    ("messages: send, one sender (no fsync)", "channels", "send, single sender (no fsync)",
     "channels", "baseline: stage, write, rename a file (no fsync)", "redis: XADD, single sender", "p50_us"),
    ("messages: send throughput", "channels", "send, single sender (no fsync)",
     "channels", "baseline: stage, write, rename a file (no fsync)", "redis: XADD, single sender", "ops_per_s"),
    ("messages: wake-up p50", "channels", "wake-up: send → watcher has it (no fsync)",
     "channels", "baseline: Unix-socket one-way hop (RTT/2)", "redis: wake-up, XADD → XREAD BLOCK has it", "p50_us"),
    ("messages: wake-up p99", "channels", "wake-up: send → watcher has it (no fsync)",
     "channels", "baseline: Unix-socket one-way hop (RTT/2)", "redis: wake-up, XADD → XREAD BLOCK has it", "p99_us"),
    ("locks: acquire + release, uncontended", "locks", "acquire + release, uncontended (no fsync)",
     "locks", "baseline: open, flock, close a file", "redis: SET NX PX + checked delete, uncontended", "p50_us"),
    ("locks: hand-off, 4 processes", "locks", "hand-off, 4 processes (wait per acquire)",
     None, None, "redis: hand-off, 4 processes (wait per acquire)", "ops_per_s"),
    ("locks: hand-off, 8 processes", "locks", "hand-off, 8 processes (wait per acquire)",
     None, None, "redis: hand-off, 8 processes (wait per acquire)", "ops_per_s"),
    ("tasks (10k): ready", "tasks", "10000 tasks: ready (library, index)",
     "tasks", "10000 tasks: baseline: read every file", None, "p50_us"),
    ("tasks (10k): claim", "tasks", "10000 tasks: claim best (library)",
     "tasks", "10000 tasks: baseline: read every file", None, "p50_us"),
    ("tasks (10k): progress", "tasks", "10000 tasks: progress (library, index)",
     "tasks", "10000 tasks: baseline: read every file", None, "p50_us"),
    ("tasks (10k): `maos task ready`", "tasks", "10000 tasks: maos ready",
     "tasks", "10000 tasks: baseline: read every file", None, "p50_us"),
    ("journal: send (no fsync), beside journal off", "journal", "send (no fsync), journal on",
     "journal", "send (no fsync), journal off", None, "p50_us"),
    ("journal: lock acquire + release, beside journal off", "journal", "lock acquire + release, journal on",
     "journal", "lock acquire + release, journal off", None, "p50_us"),
    ("CLI start-up", "tasks", "CLI start-up (`maos --version`)",
     "tasks", "baseline: start a process (`true`)", None, "p50_us"),
    ("merge: prepare, clean pair", "merge", "prepare, clean pair (agent-0 → main)",
     "merge", "baseline: git merge-tree, one pair", None, "p50_us"),
]

print("| job | MAOS | in-run baseline | ratio | Redis | peak memory (bench process) |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for job, bench, row, bbench, brow, redis_row, what in JOBS:
    unit = "ops" if what == "ops_per_s" else "µs"
    mine = cell(bench, row, what)
    base = cell(bbench, brow, what) if brow else None
    redis = cell("redis", redis_row, what) if redis_row else None
    if what == "ops_per_s":
        ratio = "–"
    else:
        ratio = f"{mine / base:.2f}×" if mine and base and mine / base < 10 else (
            f"{mine / base:.1f}×" if mine and base else "–")
    mem = memory.get(bench)
    print(f"| {job} | {fmt(mine, unit)} | {fmt(base, unit)} | {ratio} | {fmt(redis, unit)} | "
          f"{'–' if mem is None else f'{mem:.0f} MiB'} |")
if "redis" in memory:
    print(f"\nRedis client bench process peak memory: {memory['redis']:.0f} MiB "
          "(the redis-server itself is not counted).")
