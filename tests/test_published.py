"""The README quotes published runs: its numbers must be the ones their results.json holds."""

import json

import pytest

from specact.pipeline import REPO

README = (REPO / "README.md").read_text()


@pytest.mark.parametrize("run, heading", [("2026-11-26-default", "### `default` profile"), ("2026-11-26-gpu", "### `gpu` profile")])
def test_readme_accuracies_match_published_results(run, heading):
    res = json.loads((REPO / "reports" / "published" / run / "results.json").read_text())
    by_config = {r["config"]: r for r in res["tables"]["configurations"]}
    section = README[README.index(heading):].split("\n## ")[0].split("\n### ")[0]  # up to the next heading
    assert f"reports/published/{run}/" in section  # the section names the run it quotes
    start = section.index("| config |")
    table = section[start:section.index("\n\n", start)]
    rows = {line.split("|")[1].strip().split(" ")[0]: line for line in table.splitlines()[2:]}
    assert {"A", "B", "C", "D", "E"} <= set(rows) <= set(by_config)
    for config, line in rows.items():
        r = by_config[config]
        cell = f"{100 * r['accuracy']:.1f}% [{100 * r['accuracy_lo']:.1f}, {100 * r['accuracy_hi']:.1f}]"
        assert cell in line, (run, config, cell, line)
