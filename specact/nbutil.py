"""Small conveniences every notebook uses: validated parameters, seeding, plotting style, metrics files."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from specact.config import build
from specact.jsonable import to_jsonable


def setup(seed: int = 0) -> None:
    """Seed every RNG the study touches and set a readable plotting style for HTML reports."""
    import numpy as np
    import seaborn as sns
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    sns.set_theme(context="notebook", style="whitegrid")


def section_dict(cls, values: dict | None):
    """One params section, passed to a notebook as one dict parameter, as dataclass ``cls``.

    The runner passes the run's resolved section; a notebook run by hand may pass ``{}`` (the dataclass
    defaults, stated only in specact/config.py) or any subset of the fields. An unknown key or a
    wrongly-typed value raises :class:`specact.config.ParamsError` naming it -- papermill would only
    warn about an unknown parameter, and a dict's keys it does not see at all.
    """
    return build(cls, dict(values or {}))


def write_json(path: str | Path, obj: Any) -> Path:
    """Write metrics as JSON (``pm.record`` is gone: results live in files, not notebook metadata)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(obj), indent=2, sort_keys=True))
    return path


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def show(fig, name: str | None = None, dpi: int = 110) -> None:
    """Display a matplotlib figure as an inline PNG: in Jupyter, in the executed notebook and its HTML.

    A ``matplotlib.figure.Figure`` built outside pyplot has no image representation in IPython
    (it prints as ``<Figure size ...>``); this draws it. ``name`` becomes the file name nbconvert
    gives the image when exporting Markdown (``<name>.png``). A pyplot-managed figure is closed
    afterwards so the inline backend does not draw it a second time (shown once, never lost).
    """
    import io

    from IPython.display import Image, display

    fig = getattr(fig, "figure", fig)  # an Axes (seaborn's return value) -> its figure
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    display(Image(data=buf.getvalue(), format="png"), metadata={"filename": f"{name}.png"} if name else None)
    import matplotlib.pyplot as plt

    plt.close(fig)  # a no-op for a figure pyplot does not manage


def learning_curves(out_dir: str | Path, title: str = "learning curves"):
    """Training and dev loss against the optimizer step (``loss_curve.csv`` written by training), the
    best dev checkpoint marked, and the dev accuracy at the end (``metrics.json``) in the title."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    out_dir = Path(out_dir)
    df = pd.read_csv(out_dir / "loss_curve.csv")
    metrics = read_json(out_dir / "metrics.json") if (out_dir / "metrics.json").is_file() else {}
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(data=df, x="step", y="loss", hue="split", marker="o", ax=ax)
    if metrics.get("best_step"):
        ax.axvline(metrics["best_step"], color="grey", linestyle="--", label="best dev loss (kept)")
        ax.legend()
    dev_acc = metrics.get("dev_acc")
    ax.set_title(title + (f" - dev accuracy at the end {dev_acc:.3f}" if dev_acc is not None else ""))
    return fig
