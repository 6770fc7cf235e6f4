#!/usr/bin/env python3
"""A scripted model on 127.0.0.1 for the real-client tests: it speaks the Anthropic Messages
API (Claude Code), the OpenAI Responses API (Codex) and the Gemini API (Gemini CLI), all
streamed as server-sent events, and answers each request with the next step of a script.

    model_server.py SCRIPT.json RECORD.jsonl PORTFILE

SCRIPT.json maps a session name to a list of steps. A client is pointed at
`http://127.0.0.1:PORT/s/<session>` (its base URL); the request path tells the sessions apart.
A step is `{"tool": NAME, "input": {...}}` (a tool call of the client's own tool, e.g. `Edit`,
`apply_patch` — give `"custom": true` for Codex's grammar tool, whose input is the patch
text), `{"mcp": NAME, "input": {...}}` (a call of the `maos` server's tool NAME, named as
each client names it: `mcp__maos__NAME`, Codex's namespace `mcp__maos`, `mcp_maos_NAME`) or
`{"text": "..."}` (a final answer). The step answered is the number of tool results the request carries (so a retried
request gets the same step); past the end, the answer is the text "done". A string in a
step's input of the form `${re:REGEX}` is replaced by the first group REGEX matches in the
text of the last tool result (a task id a claim returned, say). `NAME` may be a suffix
(`reserve` finds `mcp__maos__reserve`, `mcp_maos_reserve`), matched against the tools the
request declares.

Requests that declare no tools (titles, quota checks) get a short text. Every request is
appended to RECORD.jsonl as {"session", "path", "api", "step", "headers", "body"}. The port
is written to PORTFILE once the server listens.
"""

import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCRIPT = {}
RECORD = None
LOCK = threading.Lock()


def session_of(path):
    m = re.match(r"^/s/([^/]+)(/.*)?$", path)
    return (m.group(1), m.group(2) or "/") if m else ("default", path)


def substitute(value, last_result):
    if isinstance(value, str):
        m = re.fullmatch(r"\$\{re:(.*)\}", value, re.S)
        if m:
            found = re.search(m.group(1), last_result or "")
            return found.group(1) if found else ""
        return value
    if isinstance(value, list):
        return [substitute(v, last_result) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, last_result) for k, v in value.items()}
    return value


def resolve(name, declared):
    if name in declared:
        return name
    for d in declared:
        if d.endswith("__" + name) or d.endswith("_" + name) or d.endswith("." + name):
            return d
    return name


def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(text_of(c.get("text", c.get("content", ""))) if isinstance(c, dict) else str(c) for c in content)
    if isinstance(content, dict):
        return json.dumps(content)
    return str(content)


# --- what each API's request says: declared tools, tool results so far ---------------------

def anthropic_view(body):
    tools = [t.get("name") for t in body.get("tools", []) if t.get("name")]
    results = []
    for message in body.get("messages", []):
        if isinstance(message.get("content"), list):
            for block in message["content"]:
                if block.get("type") == "tool_result":
                    results.append(text_of(block.get("content", "")))
    return tools, results


def responses_view(body):
    tools = []
    for t in body.get("tools", []):
        if t.get("type") == "namespace":
            for inner in t.get("tools", []):
                tools.append(t.get("name", "") + "__" + inner.get("name", ""))
        elif t.get("name"):
            tools.append(t["name"])
    results = []
    for item in body.get("input", []):
        if item.get("type") in ("function_call_output", "custom_tool_call_output", "mcp_tool_call_output"):
            results.append(text_of(item.get("output", "")))
    return tools, results


def gemini_view(body):
    tools = []
    for t in body.get("tools", []):
        for d in t.get("functionDeclarations", []):
            tools.append(d.get("name"))
    results = []
    for content in body.get("contents", []):
        for part in content.get("parts", []):
            if "functionResponse" in part:
                results.append(json.dumps(part["functionResponse"].get("response", {})))
    return tools, results


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"unparsed": raw.decode("utf-8", "replace")}
        session, rest = session_of(self.path)
        if "/messages" in rest:
            api, view = "anthropic", anthropic_view
        elif "/responses" in rest:
            api, view = "responses", responses_view
        elif "GenerateContent" in rest or "generateContent" in rest or "countTokens" in rest:
            api, view = "gemini", gemini_view
        else:
            api, view = "other", lambda b: ([], [])
        tools, results = view(body)
        steps = SCRIPT.get(session, [])
        step_index = len(results)
        if not tools:
            step = {"text": "ok"}
            step_index = None
        elif step_index < len(steps):
            step = dict(steps[step_index])
        else:
            step = {"text": "done"}
        if "mcp" in step:
            name = step.pop("mcp")
            if api == "responses":
                step.update(tool=name, namespace="mcp__maos", name=name)
            elif api == "gemini":
                step["tool"] = "mcp_maos_" + name
            else:
                step["tool"] = "mcp__maos__" + name
        if "tool" in step:
            step["tool"] = resolve(step["tool"], tools)
            step["input"] = substitute(step.get("input", {}), results[-1] if results else "")
        with LOCK:
            RECORD.write(json.dumps({"session": session, "path": self.path, "api": api,
                                     "step": step_index, "answer": step,
                                     "headers": dict(self.headers), "body": body}) + "\n")
            RECORD.flush()
        if api == "anthropic":
            events = anthropic_events(body, step)
        elif api == "responses":
            events = responses_events(step, step_index)
        elif api == "gemini":
            if "countTokens" in rest:
                return self.json({"totalTokens": 10})
            events = gemini_events(step, step_index)
        else:
            return self.json({})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for name, data in events:
            chunk = ""
            if name:
                chunk += f"event: {name}\n"
            chunk += f"data: {json.dumps(data)}\n\n"
            self.wfile.write(chunk.encode())
            self.wfile.flush()
        self.close_connection = True

    def json(self, value):
        data = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def anthropic_events(body, step):
    model = body.get("model", "claude-sonnet-4-5")
    usage = {"input_tokens": 10, "output_tokens": 1}
    yield "message_start", {"type": "message_start", "message": {
        "id": "msg_scripted", "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}}
    if "tool" in step:
        yield "content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_scripted_%d" % id(step), "name": step["tool"], "input": {}}}
        yield "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "input_json_delta", "partial_json": json.dumps(step["input"])}}
        stop = "tool_use"
    else:
        yield "content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "text", "text": ""}}
        yield "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "text_delta", "text": step.get("text", "")}}
        stop = "end_turn"
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    yield "message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                            "usage": {"output_tokens": 5}}
    yield "message_stop", {"type": "message_stop"}


def responses_events(step, index):
    rid = "resp_%s" % (index if index is not None else "x")
    yield "response.created", {"type": "response.created", "response": {"id": rid}}
    if "tool" in step:
        call_id = "call_%s" % index
        if step.get("custom"):
            item = {"type": "custom_tool_call", "id": "ctc_%s" % index, "call_id": call_id,
                    "name": step["tool"], "input": step["input"] if isinstance(step["input"], str) else json.dumps(step["input"]),
                    "status": "completed"}
        else:
            name = step["tool"]
            item = {"type": "function_call", "id": "fc_%s" % index, "call_id": call_id,
                    "name": name, "arguments": json.dumps(step["input"]), "status": "completed"}
            if step.get("namespace"):
                item["namespace"] = step["namespace"]
                item["name"] = step["name"]
    else:
        item = {"type": "message", "role": "assistant", "id": "msg_%s" % index, "status": "completed",
                "content": [{"type": "output_text", "text": step.get("text", ""), "annotations": []}]}
    yield "response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item}
    yield "response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}
    yield "response.completed", {"type": "response.completed", "response": {
        "id": rid, "usage": {"input_tokens": 10, "input_tokens_details": None, "output_tokens": 5,
                             "output_tokens_details": None, "total_tokens": 15}}}


def gemini_events(step, index):
    if "tool" in step:
        part = {"functionCall": {"id": "fc_%s" % index, "name": step["tool"], "args": step["input"]}}
    else:
        part = {"text": step.get("text", "")}
    yield None, {"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
                 "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}}


def main():
    global SCRIPT, RECORD
    script_path, record_path, port_file = sys.argv[1:4]
    with open(script_path) as f:
        SCRIPT = json.load(f)
    RECORD = open(record_path, "a")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
