"""What notebooks 05 (predict) and 06 (one configuration) compute between the library's calls.

The notebooks keep narrative, their parameters and calls; the small compositions they show and
save live here. Nothing of the report is imported: the predict stage's content key must not
change when a figure of the report does (``tests/test_pipeline.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from specact import configurations, deferral, predictions
from specact.config import EvalConfig, load_params


# ---------------------------------------------------------------- 05: every role, once per step
def frozen_strong_spec(run_dir: str | Path):
    """The strong model's spec when the run keeps its frozen base (configuration A_frozen), else None."""
    study = load_params(Path(run_dir) / "params.yaml")
    return study.strong.model if study.strong.zero_shot else None


def label_counts(targets: dict[str, list[dict]]) -> pd.DataFrame:
    """Decision points per gold label (rows) and split (columns)."""
    counts = {split: pd.Series([r["label"] for r in records]).value_counts() for split, records in targets.items()}
    return pd.DataFrame(counts).fillna(0).astype(int)


def shown_split(rows_by_split: dict[str, list[dict]], reported: str) -> str:
    """The split a notebook shows: the external file's when there is one, else the reported split."""
    return "external" if "external" in rows_by_split else reported


def role_accuracy(rows_by_split: dict[str, list[dict]]) -> pd.DataFrame:
    """Each role on its own on every split (:func:`specact.evaluate.role_table`), indexed by (split, role)."""
    from specact.evaluate import role_table

    return pd.concat({split: role_table(rows) for split, rows in rows_by_split.items()}, names=["split", "role"])


# ---------------------------------------------------------------- 06: one configuration on every split
@dataclass
class ConfigurationInputs:
    """What one configuration's evaluation reads: the dev rows (thresholds), every reported split's rows and
    the roles' prices, and where the per-split results go (``eval_root/<split>/<configuration>/``)."""

    configuration: str
    eval_root: Path
    rows_dev: list[dict]
    rows: dict[str, list[dict]]
    roles: dict

    def available(self) -> dict[str, bool]:
        """Per reported split: whether its rows carry every role the configuration needs."""
        return {split: deferral.available(rows, self.configuration) for split, rows in self.rows.items()}

    def overview(self) -> pd.DataFrame:
        available = self.available()
        return pd.DataFrame({"steps": {s: len(r) for s, r in self.rows.items()}, "evaluated": available})


def configuration_inputs(eval_dir: str | Path, configuration: str) -> ConfigurationInputs:
    """Read the prediction rows 05 wrote under ``eval_dir`` (and its sibling split folders) and its ``roles.json``."""
    if configuration not in configurations.NAMES:
        raise ValueError(f"configuration must be one of {configurations.NAMES}, got {configuration!r}")
    import json

    eval_dir = Path(eval_dir)
    files = predictions.prediction_files(eval_dir)
    return ConfigurationInputs(
        configuration=configuration,
        eval_root=eval_dir.parent if eval_dir.name in predictions.SPLITS else eval_dir,
        rows_dev=predictions.read_rows(files["dev"]),
        rows={s: predictions.read_rows(files[s]) for s in predictions.REPORTED if s in files},
        roles=json.loads((eval_dir / "roles.json").read_text()),
    )


def evaluate_splits(inputs: ConfigurationInputs, cfg: EvalConfig, seed: int) -> dict[str, dict]:
    """:func:`specact.deferral.evaluate_split` on every reported split whose rows support the configuration."""
    available = inputs.available()
    return {split: deferral.evaluate_split(inputs.configuration, inputs.rows_dev, rows, inputs.roles, cfg, seed)
            for split, rows in inputs.rows.items() if available[split]}


def operating_choice(evaluations: dict[str, dict]):
    """The dev-chosen operating point (a ``ThresholdChoice``; the same on every split), or None."""
    return next(iter(evaluations.values()))["type"]["choice"] if evaluations else None


def results_table(evaluations: dict[str, dict]) -> pd.DataFrame:
    """One column per split: the headline summary, its cluster interval and the strict metric at its own threshold."""
    columns = {}
    for split, evaluation in evaluations.items():
        headline, strict = evaluation["type"], evaluation["strict"]
        columns[split] = {**headline["result"].summary(), "accuracy_lo": headline["accuracy_ci"].low,
                          "accuracy_hi": headline["accuracy_ci"].high,
                          "strict_accuracy_own_threshold": strict["result"].summary()["accuracy_strict"]}
    return pd.DataFrame(columns)


def confusion_results(evaluations: dict[str, dict], configuration: str) -> dict:
    """``{"<configuration> · <split>": StepResults}`` to draw as confusion matrices; empty when a split has
    no single prediction per step (random acceptance is an expectation)."""
    results = {split: evaluation["type"]["result"] for split, evaluation in evaluations.items()}
    if not all(r.steps["pred"].notna().all() for r in results.values()):
        return {}
    return {f"{configuration} · {split}": r for split, r in results.items()}


def sweep_figures(inputs: ConfigurationInputs, cfg: EvalConfig, evaluations: dict[str, dict]) -> list:
    """Per reported split, accuracy against measured cost at every threshold of the dev-chosen signal, the
    operating point in red; none for a configuration without a threshold."""
    import matplotlib.pyplot as plt

    from specact.thresholds import threshold_sweep

    choice, name = operating_choice(evaluations), inputs.configuration
    if name not in configurations.THRESHOLDED or choice is None or not choice.signal:
        return []
    figures = []
    for split, rows in inputs.rows.items():
        sweep = threshold_sweep(rows, inputs.roles, cfg, name, choice.signal)
        fig, ax = plt.subplots()
        sweep.plot(x="measured_cost", y="accuracy", marker=".", legend=False, title=f"{name} ({choice.signal}) on {split}", ax=ax)
        chosen = evaluations[split]["type"]["result"].summary()
        ax.scatter([chosen["measured_cost"]], [chosen["accuracy"]], color="red", zorder=3)
        ax.set_xlabel("measured cost per step (A = 1)")
        ax.set_ylabel("accuracy")
        figures.append(fig)
    return figures


def write_signal_reports(inputs: ConfigurationInputs, cfg: EvalConfig, seed: int) -> pd.DataFrame | None:
    """The D notebook only (written once per run): :func:`specact.deferral.signal_report` of every reported
    split to ``<split>/signals.csv``, which the report reads. None for any other configuration."""
    if inputs.configuration != "D":
        return None
    reports = {split: deferral.signal_report(rows, inputs.roles, cfg, cfg.bootstrap, seed) for split, rows in inputs.rows.items()}
    for split, table in reports.items():
        (inputs.eval_root / split).mkdir(parents=True, exist_ok=True)
        table.to_csv(inputs.eval_root / split / "signals.csv", index=False)
    return pd.concat(reports, names=["split"])


def save_results(inputs: ConfigurationInputs, evaluations: dict[str, dict]) -> list[str]:
    """:func:`specact.deferral.save_split` of every split to ``<split>/<configuration>/``; the files written."""
    written = []
    for split, evaluation in evaluations.items():
        directory = inputs.eval_root / split / inputs.configuration
        deferral.save_split(evaluation, directory)
        written += [str(p.relative_to(inputs.eval_root)) for p in directory.iterdir()]
    return sorted(written)
