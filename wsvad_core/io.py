"""Atomic file writes: a crash never leaves a half-written output under its final name."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from wsvad_core.errors import WRITE_ERRNOS, StorageError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, shared_mode())  # mkstemp makes 0600; outputs are shared files
        os.replace(tmp_path, path)
    except OSError as err:
        if isinstance(err, StorageError) or err.errno not in WRITE_ERRNOS:
            raise
        raise StorageError(str(path), path.parent, err) from err
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n")


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for what shows up in metrics, recipes and provenance: numpy
    scalars and paths."""
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def shared_mode(mode: int = 0o666) -> int:
    """``mode`` under the process umask: what an output made by mkstemp/mkdtemp should get."""
    return mode & ~_UMASK
