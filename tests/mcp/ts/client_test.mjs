// Drives `maos mcp` with the official TypeScript SDK client (@modelcontextprotocol/sdk), as
// an MCP host written in TypeScript would: two agents, reservations that conflict, argument
// errors the model can read, error kinds a client can act on. Run by
// tests/multiprocess/mcp.rs with MAOS_BIN and MAOS_WORKSPACE set; exits 1 on a failed check.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const failures = [];
function check(ok, what) {
  if (!ok) failures.push(what);
}

async function connect(agent) {
  const transport = new StdioClientTransport({
    command: process.env.MAOS_BIN,
    args: ["mcp"],
    env: { ...process.env, MAOS_AGENT_ID: agent },
    stderr: "inherit",
  });
  const client = new Client({ name: "ts-test", version: "1.0.0" });
  await client.connect(transport);
  return client;
}

const errorKind = (result) => result.structuredContent?.error?.kind;
const text = (result) => result.content.map((c) => c.text ?? "").join("");

const ann = await connect("ann");
const ben = await connect("ben");

const { tools } = await ann.listTools();
const names = tools.map((t) => t.name);
for (const name of ["reserve", "unreserve", "reservations", "acquire_lock", "claim_task", "send_message"]) {
  check(names.includes(name), `tools/list has ${name}: ${names}`);
}

const mine = await ann.callTool({ name: "reserve", arguments: { patterns: ["src/db/**"], reason: "schema" } });
check(!mine.isError, `ann reserves src/db/**: ${text(mine)}`);
check(mine.structuredContent?.result?.[0]?.owner === "ann", `owner ann: ${JSON.stringify(mine.structuredContent)}`);

const theirs = await ben.callTool({ name: "reserve", arguments: { patterns: ["src/db/pool.rs"] } });
check(theirs.isError && errorKind(theirs) === "conflict", `ben is refused with kind conflict: ${JSON.stringify(theirs)}`);
check(text(theirs).includes("ann"), `the refusal names ann: ${text(theirs)}`);

const lock = await ben.callTool({ name: "acquire_lock", arguments: { resource: "src/db/pool.rs" } });
check(lock.isError && errorKind(lock) === "conflict", `a lock under ann's reservation: ${JSON.stringify(lock)}`);

const wrong = await ben.callTool({ name: "acquire_lock", arguments: { resource: 5 } });
check(wrong.isError && errorKind(wrong) === "invalid_input" && text(wrong).includes("`resource`"),
  `a wrong argument type is a tool error naming it: ${JSON.stringify(wrong)}`);

const missing = await ben.callTool({ name: "show_task", arguments: { id: "t-nope" } });
check(missing.isError && errorKind(missing) === "not_found", `kind not_found: ${JSON.stringify(missing)}`);

try {
  await ben.callTool({ name: "no_such_tool", arguments: {} });
  check(false, "an unknown tool was accepted");
} catch (e) {
  check(e.code === -32602, `an unknown tool is a protocol error -32602: ${e}`);
}

const listed = await ben.callTool({ name: "reservations", arguments: {} });
const owners = (listed.structuredContent?.reservations ?? []).map((r) => `${r.resource} ${r.owner} ${r.state}`);
check(owners.length === 1 && owners[0] === "src/db/** ann live", `reservations: ${owners}`);

const freed = await ann.callTool({ name: "unreserve", arguments: { all: true } });
check(!freed.isError, `unreserve: ${text(freed)}`);
const again = await ben.callTool({ name: "reserve", arguments: { patterns: ["src/db/pool.rs"] } });
check(!again.isError, `ben reserves once ann released: ${text(again)}`);

await ann.close();
await ben.close();

if (failures.length) {
  for (const f of failures) console.log(`FAIL ${f}`);
  process.exit(1);
}
console.log("ok: the TypeScript SDK client drove maos mcp");
