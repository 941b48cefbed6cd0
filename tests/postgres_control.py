"""A PostgreSQL server of a test's own, which the test can stop and start again.

It is the embedded server (the same binaries as `popmap-gql` uses) in a folder of the
test's, run with `pg_ctl` so that stopping it is a real fast shutdown: connections are
terminated, the socket disappears, and new connections are refused until it is back.
"""

from __future__ import annotations

import os
import pwd
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.processes import ROOT, clean_env

# Initialises the folder (initdb) and starts the server once, so that PostgreSQL records
# its command line in postmaster.opts; the server stops when this process exits.
_INIT = """
import sys
from pathlib import Path
from popmap_gql.db.embedded import start_embedded
print(start_embedded(Path(sys.argv[1])), flush=True)
"""


@contextmanager
def scratch_folder() -> Iterator[Path]:
    """A temporary folder that PostgreSQL's own user can reach for as long as it exists.

    Not under pytest's base folder: each pytest session (other test runs on the machine
    included) makes that folder private again, and pg_ctl runs as PostgreSQL's user.
    """
    with tempfile.TemporaryDirectory(prefix="popmap-test-") as folder:
        path = Path(folder)
        path.chmod(0o755)
        yield path


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class StoppablePostgres:
    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        result = subprocess.run(
            [sys.executable, "-c", _INIT, str(self.pgdata)],
            env=clean_env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"cannot start PostgreSQL:\n{result.stderr}"
        self.url = result.stdout.strip()
        binary, *self._options = shlex.split((self.pgdata / "postmaster.opts").read_text())
        self._pg_ctl = str(Path(binary).with_name("pg_ctl"))
        # PostgreSQL refuses to run as root; the embedded package runs it as the folder's owner.
        owner = pwd.getpwuid(self.pgdata.stat().st_uid).pw_name
        self._user = owner if os.geteuid() == 0 else None

    def start(self) -> None:
        self._pg_ctl_run("-l", str(self.pgdata / "log"), "-o", shlex.join(self._options), "start")

    def stop(self) -> None:
        self._pg_ctl_run("-m", "fast", "stop")

    def _pg_ctl_run(self, *args: str) -> None:
        result = subprocess.run(
            [self._pg_ctl, "-D", str(self.pgdata), "-w", *args],
            user=self._user,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"pg_ctl {args[-1]} failed:\n{result.stderr}"


def wait_until_gone(pid: int, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)
