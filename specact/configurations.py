"""The configurations of the study: one ordered table of name -> rule that everything reads.

A configuration is a (proposal source, acceptance rule, fallback, cost terms) row; the engine
that evaluates a row on per-step predictions is :mod:`specact.deferral`. config.py validates
``configurations:`` against :data:`NAMES`, notebooks and the report iterate it: no other list
of names exists. This module imports nothing of the project, so anything may import it.

Costs per step (nominal prices ``EvalConfig.cost_*``; the verifier's price is its measured
FLOPs per call over a strong call's unless ``verifier_cost_measured`` is off; the measured
column counts each call's FLOPs, normalised by A's mean):

========  =====================================================  ============================
config    rule                                                   cost charged
========  =====================================================  ============================
A         strong model (fine-tuned)                              strong
A_frozen  strong model, frozen zero-shot, same prompt            strong
B         cheap proposer only                                    cheap
linear    TF-IDF + logistic regression over the same prompt      0
C         cheap proposes, strong verifies (accept iff agree)     cheap + strong
D         learned verifier >= dev threshold, else strong         cheap + verifier + reject x strong
D_conf    proposer's confidence >= dev threshold, else strong    cheap + reject x strong
E         best of the proposer's top-N labels >= dev threshold   cheap + N x verifier (verifier
          (picked by the verifier or the proposer, on dev)       picks) + reject x strong
oracle    accept exactly the right cheap proposals (a ceiling)   as D
random    accept at D's test accept rate, in expectation         as D
========  =====================================================  ============================
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Configuration:
    """One row of the table."""

    source: str  # whose action is kept: strong | strong_frozen | cheap | linear | candidates (E)
    accept: str  # always (no deferral) | agree (C) | threshold | oracle | random
    signals: tuple[str, ...]  # scores a threshold may use; several: the one chosen on dev
    fallback: str | None  # the role asked when a proposal is rejected
    cost: tuple[str, ...]  # calls charged at every step (the fallback is charged on reject)
    description: str


CONFIGURATIONS: dict[str, Configuration] = {
    "A": Configuration("strong", "always", (), None, ("strong",), "strong model (fine-tuned)"),
    "A_frozen": Configuration("strong_frozen", "always", (), None, ("strong",), "strong model, frozen zero-shot"),
    "B": Configuration("cheap", "always", (), None, ("cheap",), "cheap proposer only"),
    "linear": Configuration("linear", "always", (), None, (), "TF-IDF + logistic regression baseline"),
    "C": Configuration("cheap", "agree", (), "strong", ("cheap", "strong"), "strong model verifies (accept iff it agrees)"),
    "D": Configuration("cheap", "threshold", ("verifier",), "strong", ("cheap", "verifier"), "learned verifier"),
    "D_conf": Configuration("cheap", "threshold", ("conf_top", "conf_margin"), "strong", ("cheap",),
                            "proposer's own confidence"),
    "E": Configuration("candidates", "threshold", ("verifier", "proposer"), "strong", ("cheap", "verifier"),
                       "top-N labels, best one picked"),
    "oracle": Configuration("cheap", "oracle", (), "strong", ("cheap", "verifier"), "oracle cascade (ceiling)"),
    "random": Configuration("cheap", "random", (), "strong", ("cheap", "verifier"), "random acceptance at D's rate"),
}
NAMES: tuple[str, ...] = tuple(CONFIGURATIONS)  # THE ordered list of configuration names
THRESHOLDED: tuple[str, ...] = tuple(n for n, c in CONFIGURATIONS.items() if c.accept == "threshold")
SIGNALS = ("verifier", "conf_top", "conf_margin", "strong_likelihood")  # deferral signals reported side by side
