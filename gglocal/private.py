"""Owner-only files and folders for what the stand-in keeps on disk (outbox, logs, state file).

Result payloads, component output and socket paths are nobody else's business: folders are made 0700 and
files 0600 whatever the umask, and a file that already exists with wider bits is narrowed before it is
written to. Sockets are made owner-only by ``agent_client.sockets.bind_owner_only``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) and make ``path`` itself 0700; returns it."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    path.chmod(DIR_MODE)
    return path


def open_private(path: Path, flags: int) -> int:
    """``os.open`` with O_CREAT: 0600 from its first moment, and narrowed to 0600 if it existed."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def touch_private(path: Path) -> Path:
    """Make sure ``path`` exists as a 0600 file (its content is kept); returns it."""
    os.close(open_private(path, os.O_WRONLY))
    return path


def append_private(path: Path) -> io.TextIOWrapper:
    """Open ``path`` for appending UTF-8 text, creating it 0600."""
    return os.fdopen(open_private(path, os.O_WRONLY | os.O_APPEND), "a", encoding="utf-8")


def write_private_text(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text`` in a 0600 file (readers never see half of it)."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


class PrivateFileHandler(logging.FileHandler):
    """A logging FileHandler whose file is created 0600 (in a 0700 folder) whatever the umask."""

    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        super().__init__(path, mode="a", encoding="utf-8")

    def _open(self) -> io.TextIOWrapper:
        return append_private(Path(self.baseFilename))
