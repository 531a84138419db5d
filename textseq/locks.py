"""The lock a `textseq train` holds on its run directory while it writes there.

It is the operating system's lock (`flock`) on `training.lock`: it goes when the process ends,
however it ends, so a crash leaves no lock behind, and two trainings started together cannot both
get it. The file says who holds it, for the message the next one gets.

>>> lock = TrainingLock(Path("runs/dates/training.lock"))  # doctest: +SKIP
>>> lock.take(); lock.holder()  # doctest: +SKIP
'pid 4242 on host, since 2026-12-06T09:30:00+00:00'
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
from pathlib import Path

from textseq.errors import UserError


class TrainingLock:
    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def take(self) -> None:
        """Takes the lock for this process, or raises a UserError that says who holds it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 4096).decode("utf-8", "replace")
                os.close(fd)
                raise UserError(self._locked_message(owner)) from None
            except OSError as error:
                os.close(fd)
                raise UserError(f"{self.path}: cannot be locked ({error.strerror}); this file system does not "
                                "support file locks: train in a directory on a local disk") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file between our open and lock: take the new one
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # before the lock goes, so no one locks a removed file
            os.close(self._fd)
            self._fd = None

    def holder(self) -> str | None:
        """Who holds the lock right now ("pid N on HOST, since T"), or None when nobody does.

        Probes without taking it for long: a shared lock fails only while a `textseq train` holds
        the exclusive one.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(os.read(fd, 4096).decode("utf-8", "replace"))
        except OSError:
            return None
        finally:
            os.close(fd)  # closing releases a lock this probe took
        return None

    def _locked_message(self, owner: str) -> str:
        run = self.path.parent
        return (f"{run}: another textseq train is writing this run ({self.path} is locked: {_holder(owner)}); "
                "wait for it to finish, stop it, or choose another --out. The lock goes when that process ends; "
                f"only if the process is gone for good (a machine that died, a network disk) delete {self.path}")


def _holder(owner: str) -> str:
    """The lock file's content as words: who holds it."""
    try:
        who = json.loads(owner)
        return f"pid {who['pid']} on {who['host']}, since {who.get('since', '?')}"
    except (ValueError, TypeError, KeyError):
        return "its holder did not say who it is"
