"""Writing a file whole or not at all: the one temporary-name rule (`.NAME.tmp-PID` beside the
file) that checkpoints and exports share, and that the store's clean-up recognises."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` and move it over `path` only if the block succeeds,
    so a failed or cancelled write never leaves half a file under the promised name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
