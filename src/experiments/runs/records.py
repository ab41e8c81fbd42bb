"""run.json helpers shared by the writer (RunRecord) and the readers (sweep report): no heavy imports."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Readers (the sweep report, a resumed run) never see a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def finite_or_none(value: Any) -> float | None:
    """A float for JSON, or None for NaN/inf/missing/non-numeric values (JSON has no NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
