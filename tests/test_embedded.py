"""The embedded PostgreSQL: shared by processes on one folder, stopped by the last to exit."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from popmap_gql.db.orm import connection_credentials
from tests.processes import ROOT, clean_env

HOLD = """
import sys, time
from pathlib import Path
from popmap_gql.db.embedded import start_embedded
print(start_embedded(Path(sys.argv[1])), flush=True)
if sys.argv[2] == "hold":
    time.sleep(120)
"""


def _postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _start(pgdata: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLD, str(pgdata), mode],
        env=clean_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _answers(url: str) -> bool:
    conn = await asyncpg.connect(**connection_credentials(url), timeout=5)
    try:
        return bool(await conn.fetchval("SELECT 1") == 1)
    finally:
        await conn.close()


async def test_second_process_reuses_the_running_server_and_last_one_stops_it(
    tmp_path: Path,
) -> None:
    pgdata = tmp_path / "pgdata"
    holder = _start(pgdata, "hold")
    try:
        assert holder.stdout is not None
        url = holder.stdout.readline().strip()
        assert url, holder.stderr.read() if holder.stderr else ""
        pid = _postmaster_pid(pgdata)

        visitor = _start(pgdata, "exit")
        visitor_out, visitor_err = visitor.communicate(timeout=60)
        assert visitor.returncode == 0, visitor_err

        # same server, same process, still serving after the visitor left
        assert visitor_out.strip() == url
        assert _postmaster_pid(pgdata) == pid
        assert await _answers(url)
    finally:
        holder.send_signal(signal.SIGINT)  # a normal exit: atexit handlers run
        holder.wait(timeout=30)

    await _wait_until_gone(pid)


async def test_server_still_stops_after_a_user_was_killed_outright(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    crashed = _start(pgdata, "hold")
    assert crashed.stdout is not None
    url = crashed.stdout.readline().strip()
    pid = _postmaster_pid(pgdata)
    crashed.kill()  # SIGKILL: no atexit, its pid stays on the folder's list of users
    crashed.wait()
    assert await _answers(url)  # the server outlives it

    survivor = _start(pgdata, "hold")
    try:
        assert survivor.stdout is not None
        assert survivor.stdout.readline().strip() == url
        assert _postmaster_pid(pgdata) == pid
    finally:
        survivor.send_signal(signal.SIGINT)
        survivor.wait(timeout=30)

    await _wait_until_gone(pid)


async def _wait_until_gone(pid: int) -> None:
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not _alive(pid), "the embedded server is still running"
