"""Atomic file writes: write a temp file in the destination directory, then ``os.replace``.

A reader (or a ``--resume`` run) sees either the old file or the complete new one, never a
partial file: the temp file lives in the same directory, so the rename stays on one
filesystem and is atomic; on any exception the temp file is removed.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import OutputError


def ensure_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and parents), or say plainly why an output cannot go there. Commands call
    it (through ``check_output``) before any work, so a bad -o never costs a whole run."""
    folder = Path(folder)
    blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"cannot write under {folder}: {blocker} is a file, not a folder; choose another "
                          "output path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the output folder {folder}: {e.strerror or e}; choose another "
                          "output path") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into {folder}: permission denied; choose another output path")
    return folder


def check_output(final: str | os.PathLike) -> Path:
    """Fail early and clearly when ``final`` cannot be written (its folder is made if missing)."""
    final = Path(final)
    if final.is_dir():
        raise OutputError(f"{final} is a folder; give a file name to write")
    ensure_dir(final.parent)
    return final


@contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``final`` (same suffix, so writers infer the format)."""
    final = check_output(final)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{final.suffix}", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o644)                # mkstemp makes 0600; outputs are meant to be shared
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:     # make the data durable before it becomes visible
            os.fsync(f.fileno())
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(final: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def atomic_write_text(final: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(final, text.encode("utf-8"))
