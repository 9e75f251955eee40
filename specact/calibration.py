"""Map raw verifier scores to probabilities measured on dev, storable as plain JSON.

A threshold "accept when P(correct) >= t" only means what it says if the score is calibrated;
the verifier's logit is not (class balance of the pair set, LoRA on few steps). Isotonic
regression is monotone and assumption-free; Platt scaling (1-D logistic regression) is the
smoother choice for small dev sets. Both are stored as numbers, never pickles, so a
``calibration.json`` can be read by anything and reloaded across sklearn versions.
"""

from __future__ import annotations

import numpy as np


def fit_calibration(raw: np.ndarray, y: np.ndarray, method: str = "isotonic") -> dict:
    """Fit ``method`` (isotonic | platt | none) on dev scores ``raw`` and labels ``y`` (0/1)."""
    raw, y = np.asarray(raw, dtype=float), np.asarray(y, dtype=float)
    if method == "none":
        return {"method": "none"}
    if len(np.unique(y)) < 2:
        raise ValueError(f"calibration '{method}' needs both accepted and rejected dev pairs; got only label {y[0] if len(y) else None}")
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
        return {"method": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6).fit(raw[:, None], y)  # ~unregularised: 2 parameters, many points
        return {"method": "platt", "coef": float(lr.coef_[0, 0]), "intercept": float(lr.intercept_[0])}
    raise ValueError(f"calibration must be isotonic, platt or none, got {method!r}")


def apply_calibration(raw: np.ndarray, calibration: dict | None) -> np.ndarray:
    """Probabilities for raw scores; ``None`` / ``none`` falls back to the sigmoid of the logit."""
    raw = np.asarray(raw, dtype=float)
    method = (calibration or {}).get("method", "none")
    if method == "isotonic":
        # IsotonicRegression.predict is linear interpolation between its thresholds, clipped at the ends.
        return np.interp(raw, calibration["x"], calibration["y"])
    if method == "platt":
        return 1.0 / (1.0 + np.exp(-(calibration["coef"] * raw + calibration["intercept"])))
    if method == "none":
        return 1.0 / (1.0 + np.exp(-raw))
    raise ValueError(f"unknown calibration method {method!r}")
