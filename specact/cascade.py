"""Compatibility names for code written against the old ``specact.cascade`` (one module that
did four jobs). New code imports from where each job now lives:

* :mod:`specact.predictions` -- the per-step prediction rows (files, parsing, signals);
* :mod:`specact.configurations` -- THE ordered table of configurations (:data:`NAMES`);
* :mod:`specact.deferral` -- evaluating a configuration (:func:`run_configuration`, :func:`run_all`);
* :mod:`specact.thresholds` -- dev operating points, sweeps and prices.
"""

from __future__ import annotations

from specact.config import EvalConfig
from specact.configurations import NAMES as CONFIGS
from specact.deferral import StepResults, run_all, run_configuration, two_by_two  # noqa: F401
from specact.predictions import MODEL_ROLES  # noqa: F401
from specact.stats import cost_to_reach, frontier_auc, pareto_hull  # noqa: F401
from specact.thresholds import ThresholdChoice, choose
from specact.thresholds import threshold_sweep as _sweep


def choose_threshold(dev_preds, target_accept_precision: float = 0.9, config: str = "D",
                     eval_cfg: EvalConfig | None = None, min_accepted: int = 1) -> ThresholdChoice:
    """Old signature of :func:`specact.thresholds.choose`."""
    import dataclasses

    cfg = dataclasses.replace(eval_cfg or EvalConfig(), target_accept_precision=target_accept_precision)
    return choose(dev_preds, config, cfg, min_accepted=min_accepted)


def threshold_sweep(preds, roles, eval_cfg=None, config: str = "D", signal: str | None = None):
    """Old signature of :func:`specact.thresholds.threshold_sweep` (the table's first signal)."""
    from specact.configurations import CONFIGURATIONS

    return _sweep(preds, roles, eval_cfg, config, signal or CONFIGURATIONS[config].signals[0])


__all__ = ["CONFIGS", "StepResults", "ThresholdChoice", "choose_threshold", "run_all", "run_configuration",
           "threshold_sweep", "two_by_two", "pareto_hull", "frontier_auc", "cost_to_reach"]
