"""The shared LLM client against a real HTTP server on loopback that misbehaves on request."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curation.client import ChatRequest, Endpoint, EndpointConfig, chat_many
from curation.errors import CurationError
from curation.journal import fingerprint, load_journal

sys.path.insert(0, str(Path(__file__).parent))
from fault_server import FaultServer  # noqa: E402

FAST = dict(backoff_base_s=0.01, backoff_max_s=0.05)


def ask(text: str, key: str | None = None, **params) -> ChatRequest:
    return ChatRequest(key or text, [{"role": "user", "content": text}], params)


def endpoint(server: FaultServer, key: str = "sk-test-0123456789", **config) -> Endpoint:
    return Endpoint(server.base_url, "fault-model", key, EndpointConfig(**{**FAST, **config}))


@pytest.fixture()
def server():
    with FaultServer(timeout_s=1.0) as srv:
        yield srv


def test_retryable_faults_end_in_the_right_answer(server):
    requests = [
        ask("a {{fault:429,429}}"),
        ask("b {{fault:500,503}}"),
        ask("c {{fault:malformed,empty}}"),
        ask("d {{fault:drop}}"),
        ask("e {{fault:timeout}}"),
        ask("f {{delay:0.2}}"),
        ask("g"),
    ]
    responses, usage = chat_many(requests, endpoint(server, timeout_s=0.5), progress=False)
    assert [r.text for r in responses] == ["echo: a", "echo: b", "echo: c", "echo: d", "echo: e", "echo: f", "echo: g"]
    assert all(r.error is None and r.finish_reason == "stop" for r in responses)
    assert usage["retries"] == 8 and usage["failures"] == 0 and usage["requests"] == 7
    assert usage["completion_tokens"] == sum(r.completion_tokens for r in responses) == 14


def test_retry_after_is_honoured(server):
    start = time.monotonic()
    (response,), usage = chat_many([ask("wait {{fault:429}}{{retry_after:0.6}}")], endpoint(server), progress=False)
    assert response.text == "echo: wait"
    assert time.monotonic() - start >= 0.6
    assert usage["retries"] == 1


def test_exhausted_retries_fail_that_request_only_and_are_not_journaled(server, tmp_path):
    journal = tmp_path / "j.jsonl"
    requests = [ask("bad {{fault:500,500,500}}"), ask("good")]
    responses, usage = chat_many(requests, endpoint(server, max_retries=2), journal=journal, progress=False)
    assert responses[0].text is None and "HTTP 500" in responses[0].error and "3 attempts" in responses[0].error
    assert responses[1].text == "echo: good"
    assert usage["failures"] == 1
    # The next run tries the failed request again (the server now answers it).
    responses, usage = chat_many(requests, endpoint(server, max_retries=2), journal=journal, progress=False)
    assert responses[0].text == "echo: bad" and usage["requests"] == 1 and usage["resumed_from_journal"] == 1


def test_wrong_key_stops_the_run_without_showing_the_key(tmp_path):
    secret = "sk-wrong-key-abcdef123456"
    with FaultServer(api_key="sk-right") as srv:
        requests = [ask(f"q{i}") for i in range(50)]
        with pytest.raises(CurationError) as caught:
            chat_many(requests, endpoint(srv, key=secret, max_in_flight=4, api_key_env="MY_KEY"),
                      journal=tmp_path / "j.jsonl", progress=False)
        refused = srv.answered(401)
    message = str(caught.value)
    assert "HTTP 401" in message and "$MY_KEY" in message
    assert secret not in message and secret[-6:] not in message and "\n" not in message
    assert all(n == 1 for n in refused.values())  # never retried
    assert len(refused) < 50  # the run stopped instead of trying every request
    assert secret not in (tmp_path / "j.jsonl").read_text()


def test_insufficient_quota_stops_at_once(server):
    with pytest.raises(CurationError, match="insufficient_quota.*no quota left"):
        chat_many([ask("x {{fault:quota}}")], endpoint(server), progress=False)
    assert list(server.answered(429).values()) == [1]


def test_bad_request_stops_but_an_overlong_prompt_fails_alone(server):
    with pytest.raises(CurationError, match="HTTP 400"):
        chat_many([ask("x {{fault:400}}")], endpoint(server), progress=False)
    responses, usage = chat_many([ask("long {{fault:context}}"), ask("short")], endpoint(server), progress=False)
    assert "too long" in responses[0].error and responses[1].text == "echo: short"
    assert usage["failures"] == 1


def test_length_truncated_reply_reports_finish_reason(server):
    (response,), _ = chat_many([ask("tell me everything {{length}}")], endpoint(server), progress=False)
    assert response.finish_reason == "length"
    assert "echo: tell me everything".startswith(response.text) and response.text != "echo: tell me everything"


def test_in_flight_cap_and_request_order(server):
    # Later requests answer sooner; the results still come back in request order.
    requests = [ask(f"n{i} {{{{delay:{0.01 * (40 - i):.2f}}}}}", key=f"k{i}") for i in range(40)]
    responses, _ = chat_many(requests, endpoint(server, max_in_flight=4), progress=False)
    assert [r.key for r in responses] == [f"k{i}" for i in range(40)]
    assert [r.text for r in responses] == [f"echo: n{i}" for i in range(40)]
    assert server.max_in_flight == 4


def test_requests_per_minute_paces_beyond_the_burst(server):
    # 120/min = 2/s with a ten-second (20 request) burst: 24 requests need >= 2 s.
    start = time.monotonic()
    responses, _ = chat_many([ask(f"r{i}") for i in range(24)], endpoint(server, requests_per_minute=120), progress=False)
    assert all(r.text for r in responses)
    assert 1.9 <= time.monotonic() - start < 6


def test_identical_requests_are_sent_once_and_cost_is_priced(server):
    requests = [ask("same", key="a", temperature=0.0), ask("same", key="b", temperature=0.0), ask("other")]
    responses, usage = chat_many(
        requests, endpoint(server, price_input_per_million=2.0, price_output_per_million=10.0), progress=False
    )
    assert [r.key for r in responses] == ["a", "b", "other"] and responses[0].text == responses[1].text
    assert usage["requests"] == 2 and sum(server.answered().values()) == 2
    expected = (usage["prompt_tokens"] * 2.0 + usage["completion_tokens"] * 10.0) / 1e6
    assert usage["cost"] == pytest.approx(expected) and usage["cost"] > 0


def test_journal_resume_skips_finished_requests_and_tolerates_a_torn_line(server, tmp_path):
    journal = tmp_path / "j.jsonl"
    first = [ask(f"j{i}", max_tokens=5) for i in range(10)]
    chat_many(first, endpoint(server), journal=journal, progress=False)
    lines = journal.read_text().splitlines()
    assert len(lines) == 10 and "sk-test" not in journal.read_text()
    record = json.loads(lines[0])
    assert record["fingerprint"] == fingerprint("fault-model", first[0].messages, first[0].params)
    # A duplicated line and a torn last line, as a crash mid-write leaves it.
    with journal.open("a") as fh:
        fh.write(lines[3] + "\n" + lines[4][:25])
    assert len(load_journal(journal)) == 10
    assert journal.read_text().endswith("\n")  # the torn tail is cut off
    # A record whose newline never made it to disk is complete: kept, and the next line
    # starts on a line of its own.
    journal.write_text(journal.read_text() + lines[5])
    assert len(load_journal(journal)) == 10
    more = first + [ask("j10", max_tokens=5)]
    responses, usage = chat_many(more, endpoint(server), journal=journal, progress=False)
    assert [r.text for r in responses] == [f"echo: j{i}" for i in range(11)]
    assert usage["resumed_from_journal"] == 10 and usage["requests"] == 1
    assert all(n == 1 for n in server.answered().values()) and len(server.answered()) == 11
    assert len(load_journal(journal)) == 11


RUNNER = """
import json, sys
from pathlib import Path
from curation.client import ChatRequest, Endpoint, EndpointConfig, chat_many
base_url, journal, out, n = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
requests = [ChatRequest(f"row{i}", [{"role": "user", "content": f"row {i}"}], {"max_tokens": 8}) for i in range(n)]
endpoint = Endpoint(base_url, "fault-model", "sk-test", EndpointConfig(max_in_flight=8))
responses, usage = chat_many(requests, endpoint, journal=journal, progress=False)
out.write_text(json.dumps({"rows": [[r.key, r.text] for r in responses], "usage": usage}))
"""


def test_resume_after_sigkill_completes_every_request_exactly_once(tmp_path):
    n, in_flight = 300, 8
    journal, out = tmp_path / "journal.jsonl", tmp_path / "out.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    with FaultServer(delay_s=0.02) as srv:
        cmd = [sys.executable, "-c", RUNNER, srv.base_url, str(journal), str(out), str(n)]
        first = subprocess.Popen(cmd, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and first.poll() is None:
            if journal.exists() and journal.read_bytes().count(b"\n") >= n // 4:
                break
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        assert not out.exists()
        while srv.in_flight and time.monotonic() < deadline:  # let the server finish what it got
            time.sleep(0.01)
        journaled_first = set(load_journal(journal))
        answered_first = srv.answered()
        assert n // 4 <= len(journaled_first) < n  # killed mid-way
        assert journaled_first <= set(answered_first)

        second = subprocess.run(cmd, env=env, timeout=120)
        assert second.returncode == 0
        answered = srv.answered()

    result = json.loads(out.read_text())
    # The output has every row exactly once, in order, with its own answer.
    assert result["rows"] == [[f"row{i}", f"echo: row {i}"] for i in range(n)]
    assert result["usage"]["resumed_from_journal"] == len(journaled_first)
    assert result["usage"]["requests"] == n - len(journaled_first)
    # The journal holds every request exactly once (no line written twice).
    fps = [json.loads(line)["fingerprint"] for line in journal.read_text().splitlines()]
    assert len(fps) == n and len(set(fps)) == n and set(fps) == set(answered)
    # No journaled request was sent again; the second run sent every other one once.
    assert all(answered[fp] == 1 for fp in journaled_first)
    resent = {fp for fp in set(answered) - journaled_first if answered[fp] > 1}
    # Only requests answered but not yet journaled at the kill (at most those in flight)
    # can have been answered twice, and never more than twice.
    assert resent <= set(answered_first) - journaled_first
    assert len(resent) <= in_flight and all(answered[fp] == 2 for fp in resent)


def test_token_bucket_reconciles_estimates_with_usage():
    from curation.ratelimit import TokenBucket

    async def scenario() -> list[float]:
        bucket = TokenBucket(per_minute=6000, burst_seconds=0.1)  # 100 tokens/s, holds 10
        waits = []
        for charge_after in (+10, -20, 0):
            start = time.monotonic()
            await bucket.acquire(10)
            waits.append(time.monotonic() - start)
            bucket.adjust(charge_after)  # estimate minus actual usage
        return waits

    import asyncio

    refunded, charged, indebted = asyncio.run(scenario())
    assert refunded < 0.05  # the over-estimate came back: no wait
    assert charged < 0.05  # the bucket was full again after the refund
    assert indebted >= 0.25  # the under-estimate (20 tokens of debt) is waited out: 30 tokens at 100/s


def test_tokens_per_minute_limit_runs_every_request(server):
    responses, usage = chat_many([ask(f"t{i}", max_tokens=5) for i in range(20)],
                                 endpoint(server, tokens_per_minute=60_000), progress=False)
    assert [r.text for r in responses] == [f"echo: t{i}" for i in range(20)] and usage["requests"] == 20


def test_retry_after_holds_back_the_other_requests_too(server):
    requests = [ask("first {{fault:429}}{{retry_after:0.5}}")] + [ask(f"other{i}") for i in range(6)]
    responses, _ = chat_many(requests, endpoint(server, max_in_flight=2), progress=False)
    assert all(r.text for r in responses)
    refused_at = next(e["time"] for e in server.log if e["status"] == 429)
    during_pause = [e for e in server.log if e["status"] == 200 and refused_at < e["time"] < refused_at + 0.45]
    assert len(during_pause) <= 1  # at most the one request already on the wire
