"""Running the real `popmap-gql` program in a subprocess, as a user or an orchestrator would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
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


REDIS_SERVER = "/usr/bin/redis-server"  # Debian's package; .ci/run installs it


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A redis-server of our own on a free loopback port, persisting nothing (its working
    folder `folder`); yields its URL once it answers PING."""
    port = free_port()
    arguments = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [REDIS_SERVER, *arguments, "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


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
def running_server(
    env: dict[str, str],
    *args: str,
    log: Path | None = None,
    scheme: str = "http",
    host: str = "127.0.0.1",
) -> Iterator[str]:
    """`popmap-gql serve` on a free port of `host` (an IPv4 address); yields its base URL
    once /healthz answers.

    Its output goes to `log` (a temporary file if none is given), never to a pipe that
    nobody reads and that could fill up and stall the server.
    """
    with tempfile.TemporaryDirectory() as scratch:
        log = log or Path(scratch) / "server.log"
        with server_process(env, *args, log=log, scheme=scheme, host=host) as (_, base):
            yield base


@contextmanager
def server_process(
    env: dict[str, str], *args: str, log: Path, scheme: str = "http", host: str = "127.0.0.1"
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Like running_server, also yielding the process (to signal it, read its exit status)."""
    port = free_port()
    command = [sys.executable, "-m", "popmap_gql", "serve", "--host", host, "--port", str(port)]
    with log.open("w") as output:
        process = subprocess.Popen(
            [*command, *args],
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield process, _wait_until_healthy(process, f"{scheme}://{host}:{port}", log)
    finally:
        stop(process)


def without_package(folder: Path, name: str) -> str:
    """A PYTHONPATH on which `name` cannot be imported, as in an install without the extra
    that brings it: a package of that name in front of the installed one says so."""
    shadow = folder / f"without-{name}" / name
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(f"raise ImportError('No module named {name}')\n")
    return str(shadow.parent)


def popmap_gql(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`popmap-gql ARGS` run to its end in `env`, its output captured (TimeoutExpired if it
    runs longer)."""
    return subprocess.run(
        [sys.executable, "-m", "popmap_gql", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def serve_to_the_end(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`popmap-gql serve` run until it exits, for settings it must refuse at start-up
    (TimeoutExpired if it starts serving instead)."""
    return popmap_gql(env, "serve", "--port", "0")


def _wait_until_healthy(process: subprocess.Popen[str], base: str, log: Path) -> str:
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            # Up, not trusted: a test of `--https` checks the certificate itself.
            if httpx.get(f"{base}/healthz", timeout=1, verify=False).status_code == 200:  # noqa: S501
                return base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"server did not start within 60 s:\n{log.read_text()}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
