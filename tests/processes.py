"""Running the real `popmap-gql` program in a subprocess, as a user or an orchestrator would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**overrides: str) -> dict[str, str]:
    """The test process's environment without our settings, plus `overrides`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POPMAP_", "AWS_COGNITO_")) and key != "DATABASE_URL"
    }
    env.update(overrides)
    return env


@contextmanager
def running_server(env: dict[str, str], *args: str) -> Iterator[str]:
    """`popmap-gql serve` on a free port; yields its base URL once /healthz answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "popmap_gql", "serve", "--port", str(port), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                raise AssertionError(f"server exited with {process.returncode}:\n{output}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("server did not start within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        stop(process)


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
