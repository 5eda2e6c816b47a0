"""Run leases: the right to train one run, held as an OS lock on a file beside the runs."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from studio.store import models as m
from studio.store.errors import RunHeldError


class RunLease:
    """The right to train one run: an OS lock on `.locks/run-ID.lease`, whose text says who holds it
    (process, host, since). The system releases the lock when its process dies, however it
    dies, so a stale lease of a dead process is simply taken over; a live holder (in this
    process or another) makes `acquire` fail."""

    def __init__(self, path: Path, run_id: int):
        self.path = path
        self.run_id = run_id
        self._fd: int | None = None

    def acquire(self) -> "RunLease":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_file(fd)
        except OSError:
            holder = _read_text(fd)
            os.close(fd)
            who = f" ({holder})" if holder else ""
            raise RunHeldError(f"run {self.run_id} is being trained by another process{who}; "
                               "wait for it to end, or stop it first.") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()} since {m.utcnow():%Y-%m-%d %H:%M:%S} UTC".encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> "RunLease":
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def _lock_file(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _read_text(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 400).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, killed and not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    # A zombie (killed, not yet reaped) counts as gone.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().split(b")")[-1].split()[0] != b"Z"
    except OSError:
        return True
