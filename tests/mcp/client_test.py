"""Drives `maos mcp` with the official Python MCP SDK (`pip install mcp`), as a real client.

Run by the Rust test `multiprocess::mcp`; usage:
    python3 tests/mcp/client_test.py <maos binary> <workspace> <scenario>
Scenarios: `tools` (every tool, checked against the CLI), `contend` (two servers, one lock
and one task), `hold` (take a lock, print "ready", wait to be killed).
Exits non-zero with a message on the first failed check.
"""
import asyncio
import json
import os
import subprocess
import sys

from mcp import ClientSession, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client

MAOS, WORKSPACE, SCENARIO = sys.argv[1], sys.argv[2], sys.argv[3]
ENV = {"MAOS_WORKSPACE": WORKSPACE, "PATH": os.environ.get("PATH", "")}

EXPECTED_TOOLS = {
    "send_message", "read_messages", "wait_for_message", "acquire_lock", "renew_lock",
    "release_lock", "list_locks", "create_task", "claim_task", "update_task_status",
    "ready_tasks", "show_task", "progress", "deadlock_check", "merge_prepare", "merge_forecast",
    "reserve", "unreserve", "reservations", "read_inbox", "peek_inbox", "ack_message", "propose",
    "vote",
}
# The tools that only read: annotated readOnlyHint (clients such as Codex let them run
# without asking).
READ_ONLY = {
    "list_locks", "reservations", "ready_tasks", "show_task", "progress", "deadlock_check",
    "merge_prepare", "merge_forecast", "peek_inbox",
}


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")


def cli(*args, agent="cli"):
    """`maos --json …` in the same workspace; returns (exit code, parsed JSON or None)."""
    run = subprocess.run([MAOS, "--json", "--agent", agent, *args], env=ENV, capture_output=True, text=True)
    try:
        value = json.loads(run.stdout) if run.stdout.strip() else None
    except json.JSONDecodeError:
        value = None
    return run.returncode, value


def server(agent):
    return StdioServerParameters(command=MAOS, args=["mcp", "--agent", agent], env=ENV)


async def call(session, tool, arguments):
    result = await session.call_tool(tool, arguments)
    text = "".join(getattr(c, "text", "") for c in result.content)
    return result.is_error, (json.loads(text) if not result.is_error else text)


async def tools():
    async with stdio_client(server("alice")) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            check(init.server_info.name == "maos", "server name")
            listed = await session.list_tools()
            names = {t.name for t in listed.tools}
            check(names == EXPECTED_TOOLS, f"tools listed: {sorted(names)}")
            check(all(t.input_schema.get("type") == "object" and t.description for t in listed.tools), "schemas")
            for t in listed.tools:
                a = t.annotations
                check(a is not None and a.read_only_hint == (t.name in READ_ONLY)
                      and a.destructive_hint is False and a.open_world_hint is False
                      and (a.idempotent_hint or t.name not in READ_ONLY), f"annotations of {t.name}: {a}")
                # Every property has a type: Codex drops one without.
                for prop, rule in t.input_schema.get("properties", {}).items():
                    check("type" in rule, f"{t.name}.{prop} has a type")

            # Messages. Nobody called bob has joined yet: refused, nothing written.
            err, refused = await call(session, "send_message", {"channel": "general", "payload": "hello", "to": ["bob"]})
            check(err and "no agent `bob`" in refused, f"unknown recipient refused: {refused}")
            check(cli("agent", "join", "bob")[0] == 0, "bob joins")
            err, sent = await call(session, "send_message", {"channel": "general", "payload": "hello", "to": ["bob"]})
            check(not err and sent["seq"] == 1, f"send_message: {sent}")
            code, seen = cli("msg", "recv", "general")
            check(code == 0 and seen[0]["sender"] == "alice" and seen[0]["payload"] == "hello", f"CLI sees {seen}")
            err, read = await call(session, "read_messages", {"channel": "general"})
            check(not err and len(read["messages"]) == 1, f"read_messages: {read}")
            err, got = await call(session, "wait_for_message", {"channel": "general", "timeout_seconds": 5})
            check(not err and got["timed_out"] is False and got["messages"][0]["payload"] == "hello", f"wait: {got}")
            err, got = await call(session, "wait_for_message", {"channel": "general", "timeout_seconds": 0.3})
            check(not err and got["timed_out"] is True, f"second wait times out: {got}")
            cli("msg", "send", "general", "from the cli", agent="bob")
            err, read = await call(session, "read_messages", {"channel": "general", "new": True})
            check(not err and [m["payload"] for m in read["messages"]] == ["from the cli"], f"new: {read}")

            # The inbox and acknowledgements.
            code, asked = cli("msg", "send", "review", "please look", "--to", "alice", "--ack", agent="bob")
            check(code == 0 and asked["ack"] == {"deadline": None}, f"ack asked: {asked}")
            err, inbox = await call(session, "read_inbox", {})
            check(not err and [m["payload"] for m in inbox["messages"]] == ["please look"], f"read_inbox: {inbox}")
            err, inbox = await call(session, "read_inbox", {})
            check(not err and inbox["messages"] == [], f"read once: {inbox}")
            err, acked = await call(session, "ack_message", {"channel": "review", "seq": asked["seq"], "note": "done"})
            check(not err and acked["new"] is True, f"ack_message: {acked}")
            err, again = await call(session, "ack_message", {"channel": "review", "seq": asked["seq"]})
            check(not err and again["new"] is False and again["ack"]["note"] == "done", f"second ack: {again}")
            # A vote: bob and alice decide; the outcome is announced once on `votes`.
            err, proposal = await call(session, "propose", {"text": "ship it", "voters": "alice,bob", "quorum": "2"})
            check(not err and proposal["outcome"] == "open" and proposal["quorum"] == 2, f"propose: {proposal}")
            err, standing = await call(session, "vote", {"id": proposal["id"], "vote": "yes"})
            check(not err and standing["outcome"] == "open", f"first vote: {standing}")
            err, again = await call(session, "vote", {"id": proposal["id"], "vote": "no"})
            check(err and "already voted yes" in again, f"second vote refused: {again}")
            code, final = cli("vote", "cast", proposal["id"], "yes", agent="bob")
            check(code == 0 and final["outcome"] == "approved", f"approved: {final}")
            code, announced = cli("msg", "recv", "votes")
            check(code == 0 and [m["payload"]["outcome"] for m in announced] == ["approved"], f"announced: {announced}")
            code, shown = cli("msg", "show", "review", str(asked["seq"]))
            alice = [r for r in shown["recipients"] if r["agent"] == "alice"]
            check(code == 0 and alice and alice[0]["read"] and alice[0]["ack"]["note"] == "done", f"show: {shown}")

            # Locks.
            err, lock = await call(session, "acquire_lock", {"resource": "src/db.rs", "purpose": "edit"})
            check(not err and lock["owner"] == "alice" and lock["token"] >= 1, f"acquire_lock: {lock}")
            code, shown = cli("lock", "show", "src/db.rs")
            check(code == 0 and shown["owner"] == "alice" and shown["purpose"] == "edit", f"CLI lock show: {shown}")
            code, _ = cli("lock", "acquire", "src/db.rs", agent="bob")
            check(code == 5, "bob is refused while alice holds it")
            err, renewed = await call(session, "renew_lock", {"resource": "src/db.rs", "ttl_seconds": 600})
            check(not err and renewed["token"] == lock["token"], f"renew_lock: {renewed}")
            err, listed_locks = await call(session, "list_locks", {})
            check(not err and listed_locks["locks"][0]["resource"] == "src/db.rs", f"list_locks: {listed_locks}")
            err, _ = await call(session, "release_lock", {"resource": "src/db.rs"})
            check(not err, "release_lock")
            code, _ = cli("lock", "show", "src/db.rs")
            check(code == 4, "released")
            cli("lock", "acquire", "held", "--purpose", "mine", agent="bob")
            err, text = await call(session, "acquire_lock", {"resource": "held"})
            check(err and "held by `bob`" in text and text.startswith("error:"), f"tool error: {text}")

            # Reservations: the same model as locks, seen by the CLI, conflicting both ways.
            err, granted = await call(session, "reserve", {"patterns": ["src/web/**"], "reason": "redesign"})
            check(not err and granted[0]["resource"] == "src/web/**" and granted[0]["state"] == "live", f"reserve: {granted}")
            code, _ = cli("lock", "acquire", "src/web/app.rs", agent="bob")
            check(code == 5, "bob may not lock a file alice reserved")
            cli("lock", "acquire", "src/api/x.rs", agent="bob")
            err, text = await call(session, "reserve", {"patterns": ["src/**"]})
            check(err and "the lock on `src/api/x.rs` held by `bob`" in text, f"reserve conflict: {text}")
            err, listed = await call(session, "reservations", {})
            check(not err and listed["reservations"][0]["owner"] == "alice" and listed["reservations"][0]["purpose"] == "redesign", f"reservations: {listed}")
            code, seen = cli("reservations")
            check(code == 0 and seen[0]["kind"] == "reservation", f"CLI reservations: {seen}")
            err, released = await call(session, "unreserve", {"patterns": ["src/web/**"]})
            check(not err and len(released) == 1, f"unreserve: {released}")
            code, _ = cli("lock", "acquire", "src/web/app.rs", agent="bob")
            check(code == 0, "free again")

            # Tasks.
            err, t1 = await call(session, "create_task", {"title": "design", "priority": "high", "files": ["src/db.rs:1-10"]})
            check(not err and t1["status"] == "pending", f"create_task: {t1}")
            err, t2 = await call(session, "create_task", {"title": "build", "depends_on": [t1["id"]]})
            check(not err and t2["status"] == "blocked", f"dependent: {t2}")
            code, shown = cli("task", "show", t2["id"])
            check(code == 0 and shown["dependencies"] == [t1["id"]], f"CLI task show: {shown}")
            err, ready = await call(session, "ready_tasks", {})
            check(not err and [t["id"] for t in ready["tasks"]] == [t1["id"]], f"ready_tasks: {ready}")
            err, claimed = await call(session, "claim_task", {})
            check(not err and claimed["id"] == t1["id"] and claimed["assignee"] == "alice", f"claim_task: {claimed}")
            err, done = await call(session, "update_task_status", {"id": t1["id"], "status": "completed", "note": "ok"})
            check(not err and done["unblocked"] == [t2["id"]], f"update_task_status: {done}")
            err, shown = await call(session, "show_task", {"id": t2["id"]})
            check(not err and shown["status"] == "pending", f"show_task: {shown}")
            err, text = await call(session, "update_task_status", {"id": t2["id"], "status": "completed"})
            check(err and "may go to" in text, f"illegal transition: {text}")
            err, report = await call(session, "progress", {})
            code, cli_report = cli("progress")
            check(not err and report["total"] == 2 and report["by_status"] == cli_report["by_status"], f"progress: {report}")
            err, cycles = await call(session, "deadlock_check", {})
            check(not err and cycles["cycles"] == [], f"deadlock_check: {cycles}")
            # `assign: auto` is the CLI's policy: nobody alive has `gpu`, so nobody gets it.
            err, gpu = await call(session, "create_task", {"title": "train", "assign": "auto", "requires": ["gpu"]})
            check(not err and gpu.get("assignee") is None and gpu["requires"] == ["gpu"], f"auto assign honours requires: {gpu}")

            # Merges (the test made branches maos/a/x and maos/b/x conflicting on one file).
            err, prep = await call(session, "merge_prepare", {"source": "maos/a/x", "target": "main"})
            check(not err and prep["strategy"] == "fast_forward", f"merge_prepare: {prep}")
            code, cli_prep = cli("merge", "prepare", "maos/a/x", "main")
            check(prep["source_commit"] == cli_prep["source_commit"], "prepare agrees with the CLI")
            err, forecast = await call(session, "merge_forecast", {})
            check(not err and forecast["conflicts"][0]["files"] == ["f.txt"], f"merge_forecast: {forecast}")

            # Arguments that do not fit are tool errors naming the argument (MCP 2025-11-25:
            # the model sees them and can correct the call); an unknown tool is a protocol error.
            for tool, arguments, named in [("acquire_lock", {"resource": 5}, "`resource`"),
                                           ("claim_task", {"id": ["x"]}, "`id`"),
                                           ("read_messages", {"channel": "c", "bogus": 1}, "`bogus`")]:
                result = await session.call_tool(tool, arguments)
                text = result.content[0].text
                kind = (result.structured_content or {}).get("error", {}).get("kind")
                check(result.is_error and named in text and kind == "invalid_input", f"{tool} {arguments}: {text} ({kind})")
            try:
                await session.call_tool("no_such_tool", {})
                check(False, "an unknown tool was accepted")
            except MCPError as e:
                check(e.error.code == -32602, f"no_such_tool: code {e.error.code}")
            err, text = await call(session, "acquire_lock", {"resource": "../etc/passwd"})
            check(err and "invalid resource name" in text, f"bad name: {text}")
            err, _ = await call(session, "list_locks", {})
            check(not err, "the server still answers")
    # The client closed: alice left and released what she held.
    code, agents = cli("agent", "list")
    alice = [a for a in agents if a["id"] == "alice"][0]
    check(alice["state"] == "gone", f"alice left: {alice}")


async def contend():
    async with stdio_client(server("alice")) as (ra, wa), stdio_client(server("bob")) as (rb, wb):
        async with ClientSession(ra, wa) as alice, ClientSession(rb, wb) as bob:
            await asyncio.gather(alice.initialize(), bob.initialize())
            results = await asyncio.gather(
                call(alice, "acquire_lock", {"resource": "prize"}),
                call(bob, "acquire_lock", {"resource": "prize"}),
            )
            winners = [r for r in results if not r[0]]
            losers = [r for r in results if r[0]]
            check(len(winners) == 1 and len(losers) == 1, f"one lock winner: {results}")
            check("held by" in losers[0][1], f"loser told: {losers[0][1]}")
            err, task = await call(alice, "create_task", {"title": "only one"})
            results = await asyncio.gather(
                call(alice, "claim_task", {"id": task["id"]}),
                call(bob, "claim_task", {"id": task["id"]}),
            )
            winners = [r for r in results if not r[0]]
            losers = [r for r in results if r[0]]
            check(len(winners) == 1 and len(losers) == 1, f"one task winner: {results}")
            check("already claimed by" in losers[0][1], f"loser told: {losers[0][1]}")


async def hold():
    async with stdio_client(server("carol")) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            err, _ = await call(session, "acquire_lock", {"resource": "carols-file", "ttl_seconds": 3600})
            check(not err, "carol holds the lock")
            print("ready", flush=True)
            await asyncio.sleep(3600)


asyncio.run({"tools": tools, "contend": contend, "hold": hold}[SCENARIO]())
print("ok")
