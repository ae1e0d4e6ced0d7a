"""A fault-injecting OpenAI-compatible chat server of the tests' own (real HTTP, loopback).

asyncio streams with a minimal HTTP/1.1 keep-alive loop, so hundreds of connections cost
little and the client, not the server, is what a benchmark measures. Faults are asked
for inside the request's last message, so each test says what should happen to each
request, attempt by attempt:

- ``{{fault:429,500,malformed}}``: the 1st attempt gets a 429, the 2nd a 500, the 3rd a
  200 whose body is not JSON; later attempts succeed. Also ``503``, ``drop`` (close the
  connection without answering), ``timeout`` (answer after ``timeout_s``), ``empty``
  (200 with no choices), ``400``, ``context`` (400 context_length_exceeded), ``401``,
  ``403``, ``quota`` (429 insufficient_quota).
- ``{{retry_after:0.2}}``: 429 and 503 carry this Retry-After (seconds).
- ``{{length}}``: the reply is cut off, finish_reason "length".
- ``{{delay:0.05}}``: every attempt waits this long before answering.

Attempts are counted per request fingerprint (sha256 of model, messages and the other
body fields, the same recipe as the client's journal). Every answer is logged in
``log`` (and, with ``log_path``, appended to a JSONL file) as fingerprint + status.

Run alone: ``python tests/fault_server.py [--port 0] [--delay 0]`` prints ``PORT <n>``.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
import threading
import time
from pathlib import Path

_DIRECTIVE = re.compile(r"\{\{(\w+)(?::([^}]*))?\}\}")
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


def request_fingerprint(body: dict) -> str:
    params = {k: v for k, v in body.items() if k not in ("model", "messages")}
    payload = json.dumps({"model": body.get("model"), "messages": body.get("messages"), "params": params},
                         sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _directives(body: dict) -> dict[str, str]:
    messages = body.get("messages") or [{}]
    content = str(messages[-1].get("content") or "")
    return {name: arg or "" for name, arg in _DIRECTIVE.findall(content)}


def _reply_text(body: dict) -> str:
    """A deterministic answer: the last message, directives removed, echoed back."""
    messages = body.get("messages") or [{}]
    content = _DIRECTIVE.sub("", str(messages[-1].get("content") or "")).strip()
    return f"echo: {content}"


class FaultServer:
    """Start with ``with FaultServer() as server: server.base_url``; runs in a thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
                 delay_s: float = 0.0, timeout_s: float = 5.0, log_path: Path | None = None,
                 model: str = "fault-model") -> None:
        self.host, self.port = host, port
        self.api_key = api_key
        self.delay_s = delay_s
        self.timeout_s = timeout_s
        self.model = model
        self.log: list[dict] = []
        self.attempts: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0  # the most chat requests being handled at one moment
        self._log_file = open(log_path, "a", encoding="utf-8") if log_path else None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # ------------------------------------------------------------------ lifecycle
    async def start_async(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def __enter__(self) -> "FaultServer":
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start_async())
            ready.set()
            self._loop.run_forever()
            self._server.close()
            pending = asyncio.all_tasks(self._loop)
            for task in pending:  # open keep-alive connections
                task.cancel()

            async def settle() -> None:
                await asyncio.gather(*pending, return_exceptions=True)

            self._loop.run_until_complete(settle())
            self._loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        if self._log_file:
            self._log_file.close()

    # ------------------------------------------------------------------ accounting
    def answered(self, status: int = 200) -> dict[str, int]:
        """Fingerprint -> how many times it was answered with ``status``."""
        counts: dict[str, int] = {}
        with self._lock:
            for entry in self.log:
                if entry["status"] == status:
                    counts[entry["fingerprint"]] = counts.get(entry["fingerprint"], 0) + 1
        return counts

    def _record(self, fp: str, status: int, fault: str) -> None:
        entry = {"fingerprint": fp, "status": status, "fault": fault, "time": time.time()}
        with self._lock:
            self.log.append(entry)
            if self._log_file:
                self._log_file.write(json.dumps(entry) + "\n")
                self._log_file.flush()

    # ------------------------------------------------------------------ HTTP
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                raw = await reader.readexactly(length) if length else b""
                keep = await self._handle(method, path, headers, raw, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _handle(self, method: str, path: str, headers: dict, raw: bytes, writer) -> bool:
        if method == "GET" and path.rstrip("/").endswith("/models"):
            await self._send(writer, 200, {"object": "list", "data": [{"id": self.model, "object": "model"}]})
            return True
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            await self._send(writer, 404, {"error": {"message": f"no route {path}", "code": "not_found"}})
            return True
        try:
            body = json.loads(raw)
        except ValueError:
            await self._send(writer, 400, {"error": {"message": "body is not JSON", "code": "invalid_json"}})
            return True
        fp = request_fingerprint(body)
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            self._record(fp, 401, "auth")
            shown = headers.get("authorization", "")[-4:]
            await self._send(writer, 401, {"error": {"message": f"Incorrect API key provided: sk-...{shown}",
                                                     "type": "invalid_request_error", "code": "invalid_api_key"}})
            return True
        with self._lock:
            attempt = self.attempts.get(fp, 0)
            self.attempts[fp] = attempt + 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(body, fp, attempt, writer)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer(self, body: dict, fp: str, attempt: int, writer) -> bool:
        faults = _directives(body)
        plan = [f for f in faults.get("fault", "").split(",") if f]
        fault = plan[attempt] if attempt < len(plan) else ""
        delay = float(faults["delay"]) if "delay" in faults else self.delay_s
        if delay:
            await asyncio.sleep(delay)
        retry_after = faults.get("retry_after")
        extra = {"Retry-After": retry_after} if retry_after else {}
        if fault == "drop":
            self._record(fp, 0, fault)
            return False
        if fault == "timeout":
            await asyncio.sleep(self.timeout_s)
        if fault in ("429", "500", "503", "400", "401", "403"):
            status = int(fault)
            self._record(fp, status, fault)
            await self._send(writer, status, {"error": {"message": f"injected {fault}", "code": None}},
                             extra if status in (429, 503) else {})
            return True
        if fault == "quota":
            self._record(fp, 429, fault)
            await self._send(writer, 429, {"error": {"message": "You exceeded your current quota.",
                                                     "type": "insufficient_quota", "code": "insufficient_quota"}})
            return True
        if fault == "context":
            self._record(fp, 400, fault)
            await self._send(writer, 400, {"error": {"message": "This model's maximum context length is 8 tokens",
                                                     "code": "context_length_exceeded"}})
            return True
        if fault == "malformed":
            self._record(fp, 200, fault)
            await self._send_raw(writer, 200, b'{"id": "x", "choices": [ {"mess', "application/json")
            return True
        if fault == "empty":
            self._record(fp, 200, fault)
            await self._send(writer, 200, {"id": "x", "object": "chat.completion", "choices": []})
            return True
        text, finish = _reply_text(body), "stop"
        if "length" in faults:
            text, finish = text[: max(1, len(text) // 2)], "length"
        prompt_chars = sum(len(str(m.get("content") or "")) for m in body.get("messages") or [])
        reply = {
            "id": f"chatcmpl-{fp[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_chars // 4 + 1, "completion_tokens": len(text.split()),
                      "total_tokens": prompt_chars // 4 + 1 + len(text.split())},
        }
        self._record(fp, 200, fault or "ok")
        await self._send(writer, 200, reply)
        return True

    async def _send(self, writer, status: int, payload: dict, headers: dict | None = None) -> None:
        await self._send_raw(writer, status, json.dumps(payload).encode("utf-8"), "application/json", headers)

    async def _send_raw(self, writer, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"Content-Type: {ctype}",
                f"Content-Length: {len(body)}", "Connection: keep-alive"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args()
    server = FaultServer(port=args.port, delay_s=args.delay, log_path=args.log)

    async def serve() -> None:
        await server.start_async()
        print(f"PORT {server.port}", flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop  # the server should not be what a client benchmark measures

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(serve())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
