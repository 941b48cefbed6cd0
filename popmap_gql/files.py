"""Files of the data folder (keys, the local certificate, the embedded media store's
objects), written whole or not at all, so a process that reads one while another writes
it never sees half of it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["write_whole"]


def write_whole(path: Path, data: bytes, *, replace: bool, mode: int = 0o666) -> None:
    """Write whole or not at all: a scratch file created with `mode`, then a rename
    (`replace`) or a link, which never replaces a file (FileExistsError)."""
    scratch = path.with_name(f".{path.name}.{secrets.token_hex(8)}.part")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    try:
        if replace:
            os.replace(scratch, path)
        else:
            os.link(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
