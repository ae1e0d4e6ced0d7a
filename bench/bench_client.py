"""Client overhead: chat_many against a loopback server that answers at once.

The server (tests/fault_server.py) runs in its own process so it does not share the
client's core. Prints requests/s for chat_many (with and without a journal, and a resume
that finds everything journaled) next to two baselines of bare ``openai.AsyncOpenAI``
calls with the same 256 in flight, so the ratio is what the client's bookkeeping (limits,
retries, fingerprints, journal) costs over the SDK alone. Each figure is the median of
``--repeat`` runs; the machine's load average is printed because other work on the same
two cores moves these figures.

    .venv/bin/python bench/bench_client.py [--requests 5000] [--in-flight 256] [--repeat 3]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curation.client import ChatRequest, Endpoint, EndpointConfig, chat_many  # noqa: E402


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fault_server.py"), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"fault server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def make_requests(n: int, tag: str) -> list[ChatRequest]:
    return [ChatRequest(f"{tag}:{i}", [{"role": "user", "content": f"{tag} question {i}"}], {"max_tokens": 16, "temperature": 0.7})
            for i in range(n)]


async def bare_openai(base_url: str, n: int, in_flight: int, transport: str) -> None:
    """Baselines without chat_many: a semaphore and the SDK alone. ``create``: the SDK's
    default httpx client and typed ``chat.completions.create``; ``post``: the same raw
    POST over aiohttp that chat_many makes, i.e. the floor of the SDK stack."""
    import httpx2
    import openai

    limits = httpx2.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    http = (openai.DefaultAsyncHttpxClient if transport == "create" else openai.DefaultAioHttpClient)(limits=limits)
    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=120.0, http_client=http)
    gate = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        messages = [{"role": "user", "content": f"bare {transport} {i}"}]
        async with gate:
            if transport == "create":
                await client.chat.completions.create(model="bench", messages=messages, max_tokens=16, temperature=0.7)
            else:
                body = {"model": "bench", "messages": messages, "max_tokens": 16, "temperature": 0.7}
                (await client.post("/chat/completions", body=body, cast_to=httpx2.Response)).json()

    await asyncio.gather(*(one(i) for i in range(n)))
    await client.close()


SERVER_PID = 0


def server_cpu() -> float:
    """CPU seconds the server process has used (Linux /proc)."""
    try:
        fields = Path(f"/proc/{SERVER_PID}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(label: str, n: int, fn, repeat: int) -> float:
    """Median wall-clock requests/s over ``repeat`` runs, with the median CPU per request
    of this (client) process and of the server process. ``fn(run)`` does one run."""
    rates, cpus, srvs = [], [], []
    for run in range(repeat):
        cpu, srv, start = time.process_time(), server_cpu(), time.perf_counter()
        fn(run)
        wall = time.perf_counter() - start
        rates.append(n / wall)
        cpus.append((time.process_time() - cpu) / n * 1e6)
        srvs.append((server_cpu() - srv) / n * 1e6)
    rate = statistics.median(rates)
    print(f"{label:<40} {n:>6} req x{repeat}  {rate:>7.0f} req/s (runs {', '.join(f'{r:.0f}' for r in rates)})"
          f"  client {statistics.median(cpus):>5.0f} us/req  server {statistics.median(srvs):>4.0f} us/req")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, k = args.requests, args.in_flight
    global SERVER_PID
    proc, base_url = start_server()
    SERVER_PID = proc.pid
    try:
        endpoint = Endpoint(base_url, "bench", "bench-key", EndpointConfig(max_in_flight=k))
        print(f"server: separate process at {base_url}; {os.cpu_count()} cores; {k} in flight; "
              f"load average {os.getloadavg()[0]:.1f}")
        # Warm-up: connections, imports.
        chat_many(make_requests(500, "warm"), endpoint, progress=False)
        r = args.repeat
        plain = timed("chat_many, no journal", n, lambda i: chat_many(make_requests(n, f"plain{i}"), endpoint, progress=False), r)
        with tempfile.TemporaryDirectory() as tmp:
            journal = Path(tmp) / "journal.jsonl"
            jour = timed("chat_many, journal (flush per line)", n, lambda i: chat_many(
                make_requests(n, f"journal{i}"), endpoint, journal=journal, progress=False), r)
            resumed = timed("chat_many, resume: all from journal", n, lambda i: chat_many(
                make_requests(n, "journal0"), endpoint, journal=journal, progress=False), r)
        post = timed("baseline: bare AsyncOpenAI.post, aiohttp", n,
                     lambda i: asyncio.run(bare_openai(base_url, n, k, "post")), r)
        nb = max(n // 5, 500)
        create = timed("baseline: bare chat.completions.create", nb,
                       lambda i: asyncio.run(bare_openai(base_url, nb, k, "create")), 1)
        print(f"chat_many / bare post = {plain / post:.2f}; journal / bare post = {jour / post:.2f}; "
              f"chat_many / bare create = {plain / create:.1f}; resume {resumed:.0f} req/s")
        print(f"bar >= 1000 req/s with {k} in flight: {'PASS' if min(plain, jour) >= 1000 else 'FAIL'} "
              f"(load average now {os.getloadavg()[0]:.1f})")
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
