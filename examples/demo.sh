#!/usr/bin/env bash
# The MAOS demo: a throwaway git repository, a .maos/ workspace, and several agent processes
# that coordinate only through its files. Run from the repository root:
#
#     bash examples/demo.sh
#
# Set KEEP=1 to keep the demo workspace afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
. examples/lib.sh
build_maos

demo=$(mktemp -d "${TMPDIR:-/tmp}/maos-demo.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$demo"' EXIT
cd "$demo"
git init -q -b main && git config user.name demo && git config user.email demo@example.invalid
mkdir -p app && printf 'name = "demo"\nport = 8080\nworkers = 2\nlog = "info"\n' > app/config.toml
printf '# Demo\n' > README.md && git add app README.md && git commit -q -m "start"
echo "== workspace: $demo"
"$maos" init

# Each agent is its own OS process with its own identity.
agent() { # agent <id> <command...>: run a command as an agent, prefixing its output
    local id=$1; shift
    MAOS_AGENT_ID=$id "$@" 2>&1 | sed "s/^/[$id] /"
}

echo "== the team joins: messages to an agent or role nobody holds are refused"
agent reviewer "$maos" agent join reviewer --role reviewer
for coder in coder-1 coder-2; do agent "$coder" "$maos" agent join "$coder" --role coder; done

echo "== a reviewer starts watching for review requests addressed to it"
agent reviewer "$maos" msg watch review --after 0 --mine --count 2 --timeout 30 &
watcher=$!
agent ops "$maos" msg watch broadcast/deploy --after 0 --count 1 --timeout 30 &
ops=$!

echo "== the planner posts the plan"
agent planner "$maos" msg send general '{"plan": ["parser", "storage"], "owners": {"parser": "coder-1", "storage": "coder-2"}}' --type plan

echo "== two coders work at the same time, reporting progress on one channel"
coders=()
for coder in coder-1 coder-2; do
    (
        for step in started tests-green done; do
            agent "$coder" "$maos" msg send general "{\"status\": \"$step\"}" --type progress >/dev/null
        done
        agent "$coder" "$maos" msg send review "please review my branch maos/$coder/work" --to reviewer --type review-request
    ) &
    coders+=($!)
done
wait "${coders[@]}"

echo "== the planner announces a deploy on a broadcast topic"
agent planner "$maos" msg broadcast deploy '{"version": "0.1.0"}'

wait "$watcher" "$ops"

echo "== both coders edit src/shared.rs: the lock lets one at a time in (fencing token shown)"
mkdir -p src && echo 0 > src/shared.rs
editors=()
for coder in coder-1 coder-2; do
    (
        for round in 1 2 3; do
            agent "$coder" "$maos" lock acquire src/shared.rs --wait 30 --purpose "edit round $round"
            n=$(cat src/shared.rs); sleep 0.05; echo $((n + 1)) > src/shared.rs
            MAOS_AGENT_ID=$coder "$maos" lock release src/shared.rs >/dev/null
        done
    ) &
    editors+=($!)
done
wait "${editors[@]}"
echo "six edits, none lost: src/shared.rs = $(cat src/shared.rs)"

echo "== a deadlock: each coder holds one file and waits for the other's"
MAOS_AGENT_ID=coder-1 "$maos" lock acquire src/a.rs --purpose "refactor" >/dev/null
MAOS_AGENT_ID=coder-2 "$maos" lock acquire src/b.rs --purpose "refactor" >/dev/null
agent coder-1 "$maos" lock acquire src/b.rs --wait 20 &
first=$!
sleep 0.3
set +e
MAOS_AGENT_ID=coder-2 "$maos" lock acquire src/a.rs --wait 20 2>&1 | sed "s/^/[coder-2] /"
code=${PIPESTATUS[0]}
set -e
echo "coder-2 exited with code $code: the deadlock victim (the youngest waiter); it releases src/b.rs as told"
MAOS_AGENT_ID=coder-2 "$maos" lock release src/b.rs
wait "$first"
echo "-- the notice on the deadlock topic:"
"$maos" msg recv broadcast/deadlock
"$maos" lock list

echo "== the planner files a plan as dependent tasks"
task() { MAOS_AGENT_ID=planner "$maos" --json task add "$@" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'; }
design=$(task "Design the storage schema" --priority high --tag db)
parser=$(task "Write the parser" --tag core)
storage=$(task "Implement storage" --depends-on "$design" --tag db --file src/db.rs)
integrate=$(task "Integrate parser and storage" --depends-on "$parser" --depends-on "$storage")
task "Write the release notes" --depends-on "$integrate" --priority low >/dev/null
"$maos" task list
workers=()

echo "== three worker processes (maos agent run) claim ready work until everything is done"
for w in worker-1 worker-2 worker-3; do
    MAOS_AGENT_ID=$w "$maos" agent run --until-idle --heartbeat 1 -- \
        sh -c 'echo "$MAOS_AGENT_ID did $MAOS_TASK_ID: $MAOS_TASK_TITLE"; sleep 0.3' 2>&1 &
    workers+=($!)
done
wait "${workers[@]}"
"$maos" agent list
echo "-- each task's output is kept where \`maos task show\` points:"
cat .maos/runs/*/attempt-1.log
echo "-- progress"
"$maos" progress
echo "-- the same as a Mermaid gantt chart"
"$maos" progress --gantt
echo "-- what the tasks channel announced"
"$maos" msg recv tasks | head -4

echo "== general, in the one order every reader sees"
"$maos" msg recv general
echo "== channels"
"$maos" msg channels
echo "== status"
"$maos" status
echo "== the files behind it"
find .maos/channels -name '*.json' | sort | head -8
echo "..."
find .maos/locks -type f | sort

echo "== agents commit on their own branches; the forecast sees a collision coming"
commit_as() { # commit_as <agent> <message>: commit what is staged, as that agent
    git -c user.name="$1" -c user.email="$1@example.invalid" commit -q -m "$2"
}
git checkout -q -b maos/coder-1/port main
sed -i 's/port = 8080/port = 9090/' app/config.toml && git add app/config.toml && commit_as coder-1 "serve on 9090"
git checkout -q -b maos/coder-2/port main
sed -i 's/port = 8080/port = 7070/' app/config.toml && git add app/config.toml && commit_as coder-2 "serve on 7070"
git checkout -q -b maos/coder-3/docs main
printf '# Demo\n\nRun it with `demo serve`.\n' > README.md && git add README.md && commit_as coder-3 "document serve"
git checkout -q main
"$maos" --agent lead merge forecast
echo "-- the notice on the merge topic:"
"$maos" msg recv broadcast/merge

echo "== merge what is clean"
"$maos" --agent lead merge run maos/coder-1/port main
"$maos" --agent lead merge run maos/coder-3/docs main
echo "== coder-2's branch now conflicts with main: prepare says where and who"
"$maos" merge prepare maos/coder-2/port main || true
"$maos" --agent lead merge run maos/coder-2/port main || echo "(refused with exit 5: not clean)"
echo "== resolve: a task for the file, assigned to the agent who last touched it there"
"$maos" --agent lead merge resolve maos/coder-2/port main
task_id=$("$maos" --json task list --tag merge-conflict | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')
"$maos" --agent coder-2 msg recv merge --mine
echo "== coder-2 resolves it on its branch and finishes the task"
git checkout -q maos/coder-2/port
git merge -q main >/dev/null 2>&1 || true
printf 'name = "demo"\nport = 9090\nworkers = 2\nlog = "info"\n' > app/config.toml
git add app/config.toml && commit_as coder-2 "resolve: keep port 9090 from main"
git checkout -q main
"$maos" --agent coder-2 task claim "$task_id" >/dev/null
"$maos" --agent coder-2 task done "$task_id" --note "kept 9090"
"$maos" --agent lead merge run maos/coder-2/port main
echo "== main now holds every agent's work"
git log --oneline --graph main | head -12
