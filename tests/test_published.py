"""The README quotes published runs: its numbers must be the ones their results.json holds."""

import json

import pytest

from specact.pipeline import REPO

README = (REPO / "README.md").read_text()


BENCHMARKS = (REPO / "BENCHMARKS.md").read_text()


@pytest.mark.parametrize("run, heading", [("2026-12-01-default", "### `default` profile")])
def test_readme_tables_are_generated_from_published_results(run, heading):
    """Each published run's README table is `specact compare`'s table of its results.json, verbatim;
    the section links the rendered report and shows its frontier figure."""
    from specact.compare import readme_table

    pub = REPO / "reports" / "published" / run
    section = README[README.index(heading):].split("\n## ")[0].split("\n### ")[0]  # up to the next heading
    assert f"](reports/published/{run}/report.html)" in section and f"](reports/published/{run}/frontier.png)" in section
    assert readme_table(pub) in section
    res = json.loads((pub / "results.json").read_text())
    d = next(r for r in res["tables"]["configurations"] if r["config"] == "D")
    assert f"{100 * d['accuracy']:.1f}% [{100 * d['accuracy_lo']:.1f}, {100 * d['accuracy_hi']:.1f}]" in section


@pytest.mark.parametrize("run", ["2026-12-01-default", "2026-11-26-default", "2026-11-26-gpu"])
def test_published_report_shows_its_figures(run):
    pub = REPO / "reports" / "published" / run
    html = (pub / "report.html").read_text()
    assert html.count("<img") >= 3 and html.count('src="data:image/png;base64') >= 3 and "<Figure size" not in html
    md = (pub / "report.md").read_text()
    for name in ("frontier", "reliability", "per_source"):
        assert f"![png]({name}.png)" in md and (pub / f"{name}.svg").is_file()
    assert {"git_commit", "date", "params", "stages", "device"} <= set(json.loads((pub / "results.json").read_text())["provenance"])


def _bench_rows(log: str) -> list[dict]:
    path = REPO / "reports" / "published" / "2026-11-26-gpu-bench-h100" / log
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith('{"what": "train"') and "error" not in line]


def _mfu(log: str, lora: bool, batch: int, flags: list[str]) -> str:
    row = next(r for r in _bench_rows(log) if r["lora"] == lora and r["batch"] == batch and r["flags"] == flags)
    return f"{100 * row['mfu']:.1f}%"


def _ratio(log: str, pattern: str) -> str:
    import re

    text = (REPO / "reports" / "published" / "2026-11-26-gpu-bench-h100" / log).read_text()
    return re.search(pattern, text).group(1)


def test_readme_throughput_figures_match_published_logs():
    """The README's GPU throughput sentence quotes the H100 benchmark logs it points to."""
    section = README[README.index("Throughput against"):].split("\n\n")[0]
    assert "reports/published/2026-11-26-gpu-bench-h100/" in section
    assert f"MFU is {_mfu('bench_mfu_compile.log', True, 16, ['nodrop', 'compile'])} for the LoRA strong role" in section
    assert f"{_mfu('bench_mfu_compile_b48_b64.log', False, 48, ['compile'])} fully fine-tuned" in section
    lora, full = (_mfu("bench_mfu_qwen3_1p7b_shape.log", lora, 8, flags) for lora, flags in ((True, ["nodrop", "compile"]), (False, ["compile"])))
    assert f"{lora.replace('.0%', '%')} MFU with LoRA, {full} fully fine-tuned" in section
    assert f"{_ratio('bench_scoring_right_padding.log', r'([0-9]+)x the naive baseline')}× the naive baseline" in section
    assert f"but {_ratio('bench_scoring_right_padding.log', r'scoring: ([0-9.]+)x the floor')[:3]}× the one-prefill" in section
    assert f"and {_ratio('bench_scoring_qwen3_1p7b_shape.log', r'scoring: ([0-9.]+)x the floor')[:3]}× the floor" in section


def _h200(log: str) -> list[dict]:
    path = REPO / "reports" / "published" / "2026-11-26-gpu-bench-h200-lora" / log
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith('{"what": "train"')]


def test_benchmarks_h200_lora_rows_match_published_logs():
    """BENCHMARKS.md's H200 LoRA rows quote the logs they link."""
    eager = {tuple(r["flags"]): r for r in _h200("bench_mfu_lora_eager.log")}
    compiled = {(r["batch"], tuple(r["flags"])): r for r in _h200("bench_mfu_lora_compile.log")}
    row = next(line for line in BENCHMARKS.splitlines() if "`lora:flat:16` |" in line)
    assert f"{eager[()]['s_per_step']:.3f} s/step" in row and f"**{100 * eager[()]['mfu']:.1f}%**" in row
    row = next(line for line in BENCHMARKS.splitlines() if "`lora:flat:64:nodrop:compile`" in line)
    assert f"**{100 * compiled[(64, ('nodrop', 'compile'))]['mfu']:.1f}%**" in row


def test_benchmarks_scaleout_row_matches_published_log():
    """BENCHMARKS.md's 2-GPU row for the current gpu.yaml quotes the run after the launch fix."""
    row = next(line for line in BENCHMARKS.splitlines() if "scaleout_2_after_fix.log" in line)
    log = REPO / "reports" / "published" / "2026-11-26-scaleout-2xh100" / "scaleout_2_after_fix.log"
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith('{"what"')]
    runs = {r["processes"]: r for r in lines if r["what"] == "run"}
    cmp = next(r for r in lines if r["what"] == "compare")
    assert f"**{cmp['speedup_tokens_per_s']:.2f}×**" in row
    assert f"within {100 * cmp['loss_max_rel_diff']:.2f}%" in row
    assert abs(runs[1]["first_loss"] - runs[2]["first_loss"]) < 1e-6  # "step-1 loss equal"


def test_readme_gpu_partial_figures_match_its_metrics():
    """The README's figures of the interrupted 2026-12-01 gpu run are its role metrics."""
    pub = REPO / "reports" / "published" / "2026-12-01-gpu-3seeds-partial"
    section = README[README.index("### `gpu` profile, 2026-12-01"):].split("\n### ")[0]
    m = lambda seed, role: json.loads((pub / seed / role / "metrics.json").read_text())  # noqa: E731
    for seed in ("s0", "s1", "s2"):
        assert f"{100 * m(seed, 'proposer')['dev_acc']:.1f}%" in section
        assert f"{m(seed, 'verifier')['dev_auroc_real']:.3f}" in section
    for seed in ("s0", "s1"):
        assert f"{100 * m(seed, 'strong')['dev_acc']:.1f}%" in section
        assert f"{100 * m(seed, 'strong')['frozen_dev_acc']:.1f}%" in section
    log = (pub / "verifier_shortcut.log").read_text()  # the diagnostic's figures are the logged ones
    for seed in ("s0", "s1", "s2"):
        line = next(x for x in log.splitlines() if f"/{seed}/" in x)
        top = float(line.split("real_auroc_top_prob=")[1].split()[0])
        assert f"{top:.3f}" in section


def test_external_evaluation_rows_quote_the_default_run_log():
    """BENCHMARKS.md's `default`-run external-evaluation rows (2 threads, then 1) quote the log's first
    two runs (the 2-thread row also its third), and every run says the trained roles' labels and
    calls were identical."""
    import re

    log = (REPO / "reports" / "published" / "2026-12-01-bench-evaluate-cpu" / "bench_evaluate_default_ba5fc16.log").read_text()
    runs = log.split("$ python")[1:]
    assert len(runs) == 3 and all("trained roles' labels and calls identical: yes" in r for r in runs)
    lines = BENCHMARKS.splitlines()
    first = next(i for i, line in enumerate(lines) if "bench_evaluate_default_ba5fc16.log" in line)
    for run, row in zip(runs, [lines[first], lines[first + 1], lines[first]]):
        (b, bp), (a, ap) = re.findall(r"(?:before|after):\s+([\d.]+) s predicting .*?([\d.]+) points/s", run)
        x = re.search(r"speed-up: ([\d.]+)x", run).group(1)
        assert f"before {b} s ({bp} points/s), after {a} s" in row and f"{ap} points/s" in row and f"**{x}×**" in row


def test_readme_lr_sweep_rows_match_the_sweep_csv():
    """The README's learning-rate table (and the rates gpu.yaml then uses) come from the H200 sweep's CSV."""
    import csv

    import yaml

    pub = REPO / "reports" / "published" / "2026-12-01-gpu-sweep"
    rows = list(csv.DictReader((pub / "sweep_lr.csv").open()))
    best = json.loads((pub / "best.json").read_text())
    gpu = yaml.safe_load((REPO / "params" / "gpu.yaml").read_text())
    for role in ("proposer", "strong"):
        mine = [r for r in rows if r["role"] == role]
        loss = " / ".join(f"**{float(r['best_dev_loss']):.3f}**" if float(r["learning_rate"]) == best[role]
                          else f"{float(r['best_dev_loss']):.3f}" for r in mine)
        acc = " / ".join(f"{100 * float(r['dev_acc']):.1f}%" for r in mine)
        assert f"| {role} |" in README and loss in README and acc in README, role
        assert float(gpu[role]["learning_rate"]) == best[role]
