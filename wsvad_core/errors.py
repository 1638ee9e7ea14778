"""Exceptions shared by the wsvad stages. Each message names the file and the problem, so a
failed Snakemake job says what to fix without a traceback hunt."""
from __future__ import annotations

import errno
from pathlib import Path


class AnnotationError(ValueError):
    """A malformed line in a split list or temporal annotation file."""

    def __init__(self, path, line_no: int | None, problem: str):
        self.path = str(path)
        self.line_no = line_no
        self.problem = problem
        where = f"{self.path}, line {line_no}" if line_no is not None else self.path
        super().__init__(f"{where}: {problem}")


class VideoReadError(RuntimeError):
    """A video file exists but cannot be decoded."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class FeatureError(ValueError):
    """Features that must not reach training: NaN/inf, a wrong dimension, an incomplete store.
    The message names the store (or file) and the video."""


class StorageError(OSError):
    """Writing an output failed (disk full, permissions, a vanished folder): the message names
    what was being written and the free space where it goes."""

    def __init__(self, what: str, target, err: OSError):
        import shutil

        target = Path(target)
        probe = next((p for p in (target, *target.parents) if p.exists()), None)
        free = f"{shutil.disk_usage(probe).free / 2**30:.2f} GB free on {probe}" if probe else "no such folder"
        hint = (" Free some space and run the same command again: what was finished before is kept, "
                "only this job is redone." if err.errno == errno.ENOSPC else "")
        super().__init__(err.errno, f"writing {what} failed: {err.strerror or err} ({free}).{hint}")

    def __str__(self) -> str:
        return self.strerror


# errors of the device written to, not of the code: reported as StorageError
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG, errno.EACCES}


class WeightsMismatchError(ValueError):
    """A backbone weights file that does not fit the architecture (strict loading)."""

    def __init__(self, path, problem: str, missing=(), unexpected=(), mismatched=()):
        self.path, self.problem = str(path), problem
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        parts = [f"{self.path}: {problem}"]
        for name, keys in (("missing keys", self.missing), ("unexpected keys", self.unexpected),
                           ("shape mismatches", self.mismatched)):
            if keys:
                more = f" (+{len(keys) - 10} more)" if len(keys) > 10 else ""
                parts.append(f"{len(keys)} {name}: {', '.join(map(str, keys[:10]))}{more}")
        super().__init__("; ".join(parts))
