#!/usr/bin/env bash
# Two Claude Code sessions on one repository, simulated end to end: this script feeds
# `maos hook claude EVENT` the JSON Claude Code sends its hooks (the fields its hooks
# reference documents) and shows what MAOS answers — the context a session starts with, an
# edit refused because the other session holds the file, a message delivered once, a commit
# refused by the pre-commit guard, a file freed when the other session stops.
# Run from the repository root:
#
#     bash examples/claude-team.sh
#
# With the real Claude Code, the same hooks come from `maos setup claude` (shown below).
# Set KEEP=1 to keep the demo repository afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
. examples/lib.sh
build_maos
PATH="$(dirname "$maos"):$PATH" # the hooks and the guard call `maos` as Claude Code would

demo=$(mktemp -d "${TMPDIR:-/tmp}/maos-claude-team.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$demo"' EXIT
repo="$demo/repo"
mkdir -p "$repo/src" && cd "$repo"
git init -q -b main && git config user.name lead && git config user.email lead@example.invalid
printf 'pub fn parse() {}\n' > src/parser.rs
printf 'pub fn store() {}\n' > src/store.rs
git add src && git commit -q -m "start"

echo "== the three commands of a team set-up"
maos init
maos setup claude
maos guard install
echo "-- the hooks Claude Code will run (.claude/settings.json):"
python3 -c 'import json; s = json.load(open(".claude/settings.json"))
for event, groups in s["hooks"].items():
    for g in groups:
        matcher, command = g.get("matcher", "*"), g["hooks"][0]["command"]
        print(f"  {event:17} {matcher:35} {command}")'

echo "== bob gets a worktree of his own (branch maos/bob/work)"
maos agent spawn bob --path "$demo/bob" >/dev/null
bob_tree="$demo/bob"

# hook <session> <cwd> <event> [json fields...]: what Claude Code does at each hook.
hook() {
    local session=$1 cwd=$2 event=$3; shift 3
    local input
    input=$(python3 -c 'import json, sys
fields = dict(session_id=sys.argv[1], transcript_path="/tmp/" + sys.argv[1] + ".jsonl",
              cwd=sys.argv[2], permission_mode="default", hook_event_name=sys.argv[3])
for extra in sys.argv[4:]:
    fields.update(json.loads(extra))
print(json.dumps(fields))' "$session" "$cwd" "$event" "$@")
    (cd "$cwd" && env -u MAOS_AGENT_ID -u MAOS_WORKSPACE maos hook claude "$event" <<<"$input")
}
# show: print the part of a hook's answer the model reads.
show() {
    python3 -c 'import json, sys
text = sys.stdin.read().strip()
if not text:
    print("  (nothing: the call goes ahead)")
else:
    out = json.loads(text)["hookSpecificOutput"]
    for key in ("permissionDecision", "permissionDecisionReason", "additionalContext"):
        if key in out:
            print(f"  {key}:")
            for line in str(out[key]).splitlines():
                print("    " + line)'
}
edit() { # edit <session> <cwd> <file>: the PreToolUse of an Edit of <file>
    hook "$1" "$2" PreToolUse '{"tool_name": "Edit", "tool_use_id": "toolu_1"}' \
        "{\"tool_input\": {\"file_path\": \"$2/$3\", \"old_string\": \"{}\", \"new_string\": \"{ todo!() }\"}}"
}

alice=a11ce000-0000-4000-8000-000000000001
bob=b0b00000-0000-4000-8000-000000000002

echo "== alice's session starts in the main checkout; this is the context it is given"
hook "$alice" "$repo" SessionStart '{"source": "startup"}' | show
echo "== bob's session starts in his worktree: it is agent bob"
hook "$bob" "$bob_tree" SessionStart '{"source": "startup"}' | show

echo "== alice edits src/parser.rs: MAOS leases the file to her for 20 minutes"
edit "$alice" "$repo" src/parser.rs | show
maos reservations

echo "== bob's model tries to edit src/parser.rs too: refused, with alice named"
edit "$bob" "$bob_tree" src/parser.rs | show
echo "== so bob's model asks alice (as the refusal suggests) and edits src/store.rs instead"
maos --agent bob msg send general "may I change parse()'s signature?" --to claude-a11ce000
edit "$bob" "$bob_tree" src/store.rs | show
printf 'pub fn store() { /* bob */ }\n' > "$bob_tree/src/store.rs"

echo "== alice's next prompt carries bob's message — once"
hook "$alice" "$repo" UserPromptSubmit '{"prompt": "go on"}' | show
hook "$alice" "$repo" PostToolUse '{"tool_name": "Edit", "tool_input": {"file_path": "x"}, "tool_response": {}}' | show

echo "== bob commits in his worktree: store.rs goes in; parser.rs, held by alice, is refused"
(cd "$bob_tree" && git add src/store.rs && git commit -q -m "store: bob's part" && echo "  committed src/store.rs")
printf 'pub fn parse(x: u8) {}\n' > "$bob_tree/src/parser.rs"
(cd "$bob_tree" && git add src/parser.rs && { git commit -q -m "parser" 2>&1 | sed 's/^/  /' || true; })
(cd "$bob_tree" && git reset -q src/parser.rs && git checkout -q src/parser.rs)

echo "== alice's turn ends (Stop): her automatic lease goes; bob may edit parser.rs now"
hook "$alice" "$repo" Stop '{"stop_hook_active": false}' | show
edit "$bob" "$bob_tree" src/parser.rs | show

echo "== both sessions end"
hook "$alice" "$repo" SessionEnd '{"reason": "prompt_input_exit"}' | show
hook "$bob" "$bob_tree" SessionEnd '{"reason": "prompt_input_exit"}' | show
maos agent list
maos reservations

echo "== and the set-up comes out as cleanly as it went in"
maos guard uninstall
maos setup claude --remove
git status --short
