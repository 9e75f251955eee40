"""Plain JSON from what the study computes (numpy, pandas, dataclasses, NamedTuples, results objects).

A module of its own, below everything: ``nbutil.write_json`` (which every notebook calls) and the
report both use it, and a stage's key hashes the code its notebook imports -- if this lived in
``report.py``, every edit of the report would re-run the whole study.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd


def to_jsonable(obj):
    """numpy / pandas / dataclasses -> plain JSON types; NaN and infinities -> null."""
    if callable(getattr(obj, "summary", None)) and hasattr(obj, "steps"):  # deferral.StepResults
        return to_jsonable(obj.summary())
    if isinstance(obj, pd.DataFrame):
        return to_jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, pd.Series):
        return to_jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):  # NamedTuple (e.g. stats.CI)
        return to_jsonable(obj._asdict())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, np.ndarray)):
        return [to_jsonable(v) for v in (obj.tolist() if isinstance(obj, np.ndarray) else obj)]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    if obj is pd.NA or obj is pd.NaT:
        return None
    return str(obj)
