"""Per-slide locks, so two `run`s into one output folder never work on the same slide at once.

A lock is ``<slide dir>/.lock`` made with O_EXCL, holding the owner's host and pid. A lock whose
owner is gone (same host, pid not alive: a killed run) is stale and taken over, as TRIDENT does
with its per-slide lock files.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # exists, owned by someone else
        return True
    return True


def owner(lock: Path) -> dict | None:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return None


def is_stale(info: dict | None) -> bool:
    """No readable owner, or an owner on this host whose process is gone."""
    if not info or "pid" not in info:
        return True
    return info.get("host") == socket.gethostname() and not _alive(int(info["pid"]))


def try_lock(slide_dir: Path) -> Path | None:
    """The lock path when taken, None when a live run holds it."""
    slide_dir.mkdir(parents=True, exist_ok=True)
    lock = slide_dir / LOCK_NAME
    me = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}).encode()
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not is_stale(owner(lock)):
                return None
            lock.unlink(missing_ok=True)      # a killed run's lock: take it over
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(me)
        return lock
    return None


def release(lock: Path | None) -> None:
    if lock is not None:
        lock.unlink(missing_ok=True)


def remove_stale_temps(slide_dir: Path) -> int:
    """Temp files a killed writer left (atomic writes name them .<final>.<random>.tmp*)."""
    n = 0
    for p in slide_dir.glob(".*.tmp*"):
        p.unlink(missing_ok=True)
        n += 1
    return n
