"""Evaluate the configurations of :mod:`specact.configurations` on per-step prediction rows.

Every configuration is a pure function of the rows (:mod:`specact.predictions`), charged for
every call it would make (prices: :func:`specact.thresholds.prices`); thresholds come from dev
(:func:`specact.thresholds.choose`). Each step is judged by :mod:`specact.judge`: ``correct``
(type, the headline) and ``correct_strict`` (type and tool name) side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from specact.config import EvalConfig
from specact.configurations import CONFIGURATIONS, NAMES, SIGNALS, THRESHOLDED
from specact.jsonable import to_jsonable
from specact.predictions import Steps
from specact.thresholds import ThresholdChoice, choose, has_signal, operating_parts, prices

METRICS = ("correct", "strict", "tool_name_correct", "call_exact")


@dataclass
class StepResults:
    """One configuration on one split: a per-step DataFrame plus how it was run."""

    name: str
    steps: pd.DataFrame
    threshold: float | None = None
    meta: dict = field(default_factory=dict)

    def weights(self) -> np.ndarray:  # acceptance as a weight: bool, or p for random in expectation
        return self.steps["accepted"].astype(float).to_numpy()

    @property
    def accuracy(self) -> float:
        return float(self.steps["correct"].astype(float).mean())

    @property
    def accept_rate(self) -> float:
        return float(np.mean(self.weights()))

    def _share(self, w, col) -> float:
        v = self.steps[col].astype(float).to_numpy()
        return float((w * v).sum() / w.sum()) if np.nansum(w) > 0 else float("nan")

    @property
    def accept_precision(self) -> float:
        """Share of accepted proposals that were right (= accuracy on accepted steps)."""
        return self._share(self.weights(), "proposal_correct")

    @property
    def acc_rejected(self) -> float:
        """Accuracy of the strong fallback on the rejected steps."""
        return self._share(1.0 - self.weights(), "fallback_correct")

    def save(self, directory) -> None:
        """``steps.jsonl`` (one row per step) and ``metrics.json`` (summary, threshold, meta)."""
        import json
        from pathlib import Path

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.steps.to_json(d / "steps.jsonl", orient="records", lines=True)
        body = {"summary": self.summary(), "threshold": self.threshold, "meta": self.meta}
        (d / "metrics.json").write_text(json.dumps(to_jsonable(body), indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory) -> StepResults:
        import json
        from pathlib import Path

        d = Path(directory)
        m = json.loads((d / "metrics.json").read_text())
        steps = pd.read_json(d / "steps.jsonl", orient="records", lines=True)
        return cls(m["summary"]["config"], steps, m["threshold"], m["meta"])

    def summary(self) -> dict:
        s = self.steps
        mean = lambda c: float(s[c].astype(float).mean())  # noqa: E731
        return {"config": self.name, "n": len(s), "accuracy": self.accuracy, "accuracy_strict": mean("correct_strict"),
                "tool_name_acc": mean("tool_name_correct"), "call_exact": mean("call_exact"),
                "accept_rate": self.accept_rate, "accept_precision": self.accept_precision,
                "acc_rejected": self.acc_rejected, "nominal_cost": mean("nominal_cost"),
                "measured_cost": mean("measured_cost"), "seconds": mean("seconds"), "threshold": self.threshold,
                "signal": self.meta.get("signal"), "verifier_price": self.meta.get("verifier_price")}


def run_configuration(name: str, preds, roles: dict | None, eval_cfg: EvalConfig | None = None,
                      threshold: float | None = None, *, signal: str | None = None, accept_rate: float | None = None,
                      random_mode: str = "expectation", seed: int = 0) -> StepResults:
    """Evaluate configuration ``name`` (one of :data:`~specact.configurations.NAMES`) on rows.

    Thresholded ones (D, D_conf, E) need ``threshold`` and ``signal`` from
    :func:`specact.thresholds.choose` on dev (``signal`` defaults to the table's first).
    ``random`` accepts at ``accept_rate`` or, given ``threshold``, at D's accept rate on these
    rows; ``random_mode="expectation"`` scores each step by its exact expected correctness
    (no seed noise; pred is then undefined), ``"simulate"`` draws the accepts with ``seed``.
    """
    cfg = eval_cfg or EvalConfig()
    if name not in CONFIGURATIONS:
        raise ValueError(f"unknown configuration {name!r}; allowed: {list(NAMES)}")
    conf, s = CONFIGURATIONS[name], Steps(preds, roles)
    price = prices(s, cfg)
    meta: dict = {"a_mean_flops": s.a_mean_flops(), "verifier_price": price["verifier"]}
    if conf.accept == "always":
        src = s.need(conf.source)
        nominal = np.full(s.n, sum(price[c] for c in conf.cost))
        return _assemble(s, name, None, src, None, None, nominal, src["flops"], src["seconds"], meta, None)
    strong = s.need("strong")
    if conf.accept == "agree":
        cheap = s.need("cheap")
        w = np.asarray(cheap["pred"] == strong["pred"], dtype=bool)
        nominal = np.full(s.n, price["cheap"] + price["strong"])
        # lossless: verifying the whole action greedily reproduces the strong output
        return _assemble(s, name, w, strong, cheap, strong, nominal, cheap["flops"] + strong["flops"],
                         cheap["seconds"] + strong["seconds"], meta, None)
    signal = signal or (conf.signals[0] if conf.signals else ("verifier" if name == "random" else None))
    part = operating_parts(s, name, cfg, signal if conf.accept == "threshold" else None)
    w, expect = _accepts(s, name, part, threshold, accept_rate, random_mode, seed, meta)
    meta["signal"] = signal if conf.accept == "threshold" else None
    wf = np.asarray(w, float)
    nominal = part["nominal"] + (1 - wf) * price["strong"]
    flops, secs = part["flops"] + (1 - wf) * strong["flops"], part["seconds"] + (1 - wf) * strong["seconds"]
    out = {k: w * part["prop"][k] + (1 - w) * strong[k] for k in METRICS} if expect else None
    return _assemble(s, name, w, out, part["prop"], strong, nominal, flops, secs, meta,
                     threshold if name in THRESHOLDED or name == "random" else None, expect)


def _accepts(s: Steps, name: str, part: dict, threshold, accept_rate, random_mode, seed, meta):
    """(accept per step, whether it is an expectation) of a thresholded / oracle / random rule."""
    accept = CONFIGURATIONS[name].accept
    if accept == "threshold":
        if threshold is None:
            raise ValueError(f"{name} needs a threshold chosen on dev (specact.thresholds.choose)")
        return part["score"] >= threshold, False
    if accept == "oracle":
        return part["prop"]["correct"].astype(bool), False
    p = accept_rate if accept_rate is not None else (
        float(np.mean(s.ver_prob >= threshold)) if threshold is not None else None)
    if p is None:
        raise ValueError("random needs accept_rate or D's threshold")
    meta.update(accept_rate=p, mode=random_mode)
    if random_mode == "simulate":
        return np.random.default_rng(seed).random(s.n) < p, False
    return np.full(s.n, p), True


def _assemble(s: Steps, name, w, out, prop, fb, nominal, flops, secs, meta, threshold,
              expect: bool = False) -> StepResults:
    """The per-step DataFrame: final action (``out``; None = chosen by ``w`` between ``prop`` and
    ``fb``; ``expect``: metrics blended by the accept probability), its correctness, what was
    accepted, and every cost column."""
    if expect:  # random in expectation: the action itself is undefined
        out = dict(out, pred=np.full(s.n, None, dtype=object), call=np.full(s.n, None, dtype=object))
    elif out is None:
        out = {k: np.where(w, prop[k], fb[k]) for k in ("pred", "call") + METRICS}
    nan = np.full(s.n, np.nan)
    as_flag = (lambda a: a) if expect else (lambda a: np.asarray(a).astype(bool))
    steps = pd.DataFrame({
        "id": s.ids, "source": s.source, "domain": s.domain, "group": s.group, "gold": s.gold,
        "pred": out["pred"], "call": out["call"], "correct": as_flag(out["correct"]),
        "correct_strict": as_flag(out["strict"]), "tool_name_correct": out["tool_name_correct"],
        "call_exact": out["call_exact"], "accepted": nan if w is None else w,
        "fallback": np.zeros(s.n, bool) if w is None else (1 - w if expect else ~np.asarray(w, bool)),
        "proposal_correct": prop["correct"] if prop is not None else nan,
        "fallback_correct": fb["correct"] if fb is not None else nan,
        "nominal_cost": nominal, "measured_flops": flops, "measured_cost": flops / meta["a_mean_flops"],
        "seconds": secs,
    })
    return StepResults(name, steps, threshold, meta)


def available(preds, name: str) -> bool:
    """Whether the rows carry every role configuration ``name`` needs (A_frozen, linear are optional)
    and, for a thresholded one, at least one of its signals (D_conf needs the proposer's logp)."""
    s, conf = Steps(preds), CONFIGURATIONS[name]
    need = {conf.source if conf.source != "candidates" else "cheap"} | ({conf.fallback} if conf.fallback else set())
    if not need <= set(s.role):
        return False
    return conf.accept != "threshold" or any(has_signal(s, name, sig, EvalConfig()) for sig in conf.signals)


def run_all(dev_preds, eval_preds, roles: dict, eval_cfg: EvalConfig | None = None, configs=NAMES,
            judge: str = "type") -> tuple[dict[str, StepResults], dict[str, ThresholdChoice]]:
    """Every configuration the rows support on ``eval_preds``; thresholds chosen on ``dev_preds`` only."""
    cfg = eval_cfg or EvalConfig()
    names = [c for c in configs if available(eval_preds, c)]
    choices = {c: choose(dev_preds, c, cfg, judge) for c in THRESHOLDED if c in names or (c == "D" and "random" in names)}
    results = {}
    for name in names:
        ch = choices.get("D" if name == "random" else name)
        results[name] = run_configuration(name, eval_preds, roles, cfg, threshold=ch.threshold if ch else None,
                                          signal=ch.signal if ch and name != "random" else None)
    return results, choices


def signal_table(preds, judge: str = "type") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{signal: (right, score)}`` of each deferral signal the rows carry, on the cheap
    proposal (for AUROC side by side, e.g. with :func:`specact.stats.cluster_auroc`)."""
    s = Steps(preds)
    right = s.need("cheap")["correct" if judge == "type" else "strict"].astype(bool)
    out = {}
    for sig in SIGNALS:
        try:
            score = s.signal(sig)
        except KeyError:
            continue
        if np.isfinite(score).any():
            out[sig] = (right, score)
    return out


def two_by_two(preds, strong_role: str = "strong") -> dict:
    """Cheap right/wrong x strong right/wrong counts and the oracle ceiling they imply.

    An oracle cascade keeps the cheap proposal exactly when it is right and otherwise asks
    the strong model, so it is wrong only where both are: ceiling = 1 - both_wrong / n.
    """
    s = Steps(preds)
    c, g = s.need("cheap")["correct"].astype(bool), s.need(strong_role)["correct"].astype(bool)
    table = pd.DataFrame([[int((c & g).sum()), int((c & ~g).sum())], [int((~c & g).sum()), int((~c & ~g).sum())]],
                         index=pd.Index(["cheap right", "cheap wrong"]),
                         columns=pd.Index([f"{strong_role} right", f"{strong_role} wrong"]))
    return {"table": table, "n": s.n, "both_right": int(table.iat[0, 0]), "cheap_only": int(table.iat[0, 1]),
            "strong_only": int(table.iat[1, 0]), "both_wrong": int(table.iat[1, 1]),
            "acc_cheap": float(c.mean()), "acc_strong": float(g.mean()), "oracle_accuracy": float(1 - (~c & ~g).mean())}


CURVES = (("D", "verifier"), ("D_conf", "conf_top"), ("D_conf", "conf_margin"), ("E", "verifier"), ("E", "proposer"))


def random_curve(preds, roles: dict | None, cfg: EvalConfig | None, name: str, signal: str,
                 rates=np.linspace(0, 1, 21)) -> pd.DataFrame:
    """Random acceptance at each rate with ``name``'s cost terms: the curve a signal must beat
    (expected accuracy p x proposal + (1 - p) x strong, same per-step charges)."""
    cfg = cfg or EvalConfig()
    s = Steps(preds, roles)
    part, strong, price = operating_parts(s, name, cfg, signal), s.need("strong"), prices(s, cfg)
    return pd.DataFrame([{"accept_rate": p, "strong_share": 1 - p,
                          "accuracy": float(np.mean(p * part["prop"]["correct"] + (1 - p) * strong["correct"])),
                          "nominal_cost": float(np.mean(part["nominal"] + (1 - p) * price["strong"])),
                          "measured_cost": float(np.mean(part["flops"] + (1 - p) * strong["flops"]) / s.a_mean_flops())}
                         for p in rates])


def signal_report(preds, roles: dict | None, cfg: EvalConfig | None = None, n_resamples: int = 1000,
                  seed: int = 0, shares=(0.5, 0.8, 0.95)) -> pd.DataFrame:
    """Each deferral signal side by side on these rows: AUROC on the cheap model's real
    proposals with a cluster-bootstrap interval (scenario groups), and for each thresholded
    curve its APGR and the measured cost to reach 50/80/95% of A's accuracy, beside the same
    for random acceptance at that configuration's prices."""
    from specact.stats import apgr, cluster_auroc, cost_to_share
    from specact.thresholds import threshold_sweep

    s = Steps(preds, roles)
    rows = []
    for sig, (right, score) in signal_table(preds).items():
        a = cluster_auroc(right, score, s.group, n_resamples, seed)
        rows.append({"config": "", "signal": sig, "auroc": a["auroc"], "auroc_low": a["low"], "auroc_high": a["high"]})
    acc_b, acc_a = float(s.need("cheap")["correct"].mean()), float(s.need("strong")["correct"].mean())
    for name, sig in CURVES:
        try:
            sweep = threshold_sweep(preds, roles, cfg, name, sig).assign(strong_share=lambda d: 1 - d["accept_rate"])
        except KeyError:
            continue  # the rows lack this signal
        rnd = random_curve(preds, roles, cfg, name, sig)
        row = {"config": name, "signal": sig, "apgr": apgr(sweep, acc_b, acc_a), "apgr_random": apgr(rnd, acc_b, acc_a)}
        for share, c in cost_to_share(sweep, acc_a, shares).items():
            row[f"cost_to_{round(share * 100)}"] = c
        for share, c in cost_to_share(rnd, acc_a, shares).items():
            row[f"random_cost_to_{round(share * 100)}"] = c
        rows.append(row)
    return pd.DataFrame(rows)


def _operating_point(rows_dev, name: str, cfg: EvalConfig, judge: str) -> ThresholdChoice | None:
    """Dev choice of a thresholded configuration; random takes D's (it accepts at D's rate)."""
    if name in THRESHOLDED:
        return choose(rows_dev, name, cfg, judge)
    return choose(rows_dev, "D", cfg, judge) if name == "random" else None


def evaluate_split(name: str, rows_dev, rows, roles: dict | None, cfg: EvalConfig | None = None,
                   seed: int = 0) -> dict:
    """Configuration ``name`` on one reported split, its operating point from dev: the headline
    result (type judge), the strict metric run with its own dev threshold, and cluster-bootstrap
    intervals of both accuracies over the rows' groups."""
    from specact.stats import cluster_bootstrap_ci

    cfg = cfg or EvalConfig()
    out = {}
    for judge, col in (("type", "correct"), ("strict", "correct_strict")):
        ch = _operating_point(rows_dev, name, cfg, judge)
        res = run_configuration(name, rows, roles, cfg, threshold=ch.threshold if ch else None,
                                signal=ch.signal if ch and name != "random" else None, seed=seed)
        ci = cluster_bootstrap_ci(res.steps[col].astype(float), res.steps["group"], cfg.bootstrap, seed)
        out[judge] = {"result": res, "choice": ch, "accuracy_ci": ci}
    return out


def save_split(ev: dict, directory) -> None:
    """``steps.jsonl`` + ``metrics.json`` (headline) and ``extra.json`` (intervals, the dev choices
    and the strict metric's own summary) of one configuration on one split."""
    import json
    from pathlib import Path

    d = Path(directory)
    ev["type"]["result"].save(d)
    strict = ev["strict"]
    extra = {"accuracy_ci": ev["type"]["accuracy_ci"]._asdict(),
             "choice": ev["type"]["choice"].asdict() if ev["type"]["choice"] else None,
             "strict": {"summary": strict["result"].summary(), "accuracy_ci": strict["accuracy_ci"]._asdict(),
                        "choice": strict["choice"].asdict() if strict["choice"] else None}}
    (d / "extra.json").write_text(json.dumps(to_jsonable(extra), indent=1))
