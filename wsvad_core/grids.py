"""Patch grids as the config and SSRL spell them: ``[rows, cols]``, ``"RxC"`` or SSRL's two-digit
code (``23`` = 2 rows x 3 columns). Torch-free: recipes, methods and the DAG all read grids."""
from __future__ import annotations

import numpy as np

__all__ = ["parse_grid", "grid_code"]


def parse_grid(value) -> tuple[int, int]:
    """A grid as ``(rows, cols)`` from ``[rows, cols]``, ``"RxC"`` or SSRL's two-digit code
    (``23`` = 2 rows x 3 columns)."""
    try:
        if isinstance(value, str):
            rows, cols = (int(v) for v in value.lower().split("x"))
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not 11 <= int(value) <= 99 or int(value) % 10 == 0:
                raise ValueError
            rows, cols = int(value) // 10, int(value) % 10
        else:
            rows, cols = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"patch grid {value!r}: expected [rows, cols], 'RxC' or a two-digit code "
                         "such as 23 (SSRL's 2 rows x 3 columns)") from None
    if rows < 1 or cols < 1:
        raise ValueError(f"patch grid {value!r}: rows and columns must be >= 1")
    return rows, cols


def grid_code(grid) -> str:
    rows, cols = parse_grid(grid)
    return f"{rows}x{cols}"
