"""The report on fabricated run folders: each paper's selection rule, missing and failed cells, files and plots;
the printed figures against METHODS.md §4."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, SHARED_DATA

from loraxs.report import build, load_runs, markdown, printed_figures


def fake_run(
    root: Path,
    name: str,
    *,
    task,
    method,
    rank,
    seed,
    lr,
    evals,
    experiment,
    model="roberta_large",
    status="finished",
    reported=None,
    params=6144,
    table=None,
    code=None,
    wall_time_s=None,
) -> Path:
    d = root / "runs" / name
    d.mkdir(parents=True)
    cfg = {"model": {"name": model}, "task": {"name": task, "lr": lr}, "trainer": {"log_every": 10}}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    m = {
        "status": status,
        "task": task,
        "adapter": method,
        "rank": rank,
        "seed": seed,
        "table": table,
        "choices": {"experiment": experiment, "model": model},
        "evals": [{"epoch": i + 1, "step": 10 * (i + 1), **e} for i, e in enumerate(evals)],
        "reported": reported if reported is not None else (evals[-1] if evals else {}),
        "trainable": {"adapter": params, "head": 10, "total": params + 10},
        "train_loss_windows": [1.0, 0.8, 0.6],
        "code": code,
        "wall_time_s": wall_time_s,
    }
    (d / "metrics.json").write_text(json.dumps(m))
    return d


def test_lorasb_rule_is_max_over_epochs_then_the_best_lr(tmp_path):
    # LoRA-SB r16 on CoLA: two learning rates; the best epoch of each, then the best of the two
    fake_run(
        tmp_path,
        "a",
        task="cola",
        method="lorasb",
        rank=16,
        seed=42,
        lr=1e-3,
        experiment="glue_lorasb",
        evals=[{"mcc": 0.50}, {"mcc": 0.61}, {"mcc": 0.55}],
    )
    fake_run(
        tmp_path,
        "b",
        task="cola",
        method="lorasb",
        rank=16,
        seed=42,
        lr=5e-4,
        experiment="glue_lorasb",
        evals=[{"mcc": 0.58}, {"mcc": 0.60}],
    )
    fake_run(
        tmp_path,
        "c",
        task="cola",
        method="lorasb",
        rank=16,
        seed=42,
        lr=5e-3,
        experiment="glue_loraxs",
        evals=[{"mcc": 0.99}],
    )  # another preset: not this table's run
    table = build("lorasb_glue", load_runs(tmp_path))
    row = next(r for r in table.rows if r.key["method"] == "lorasb" and r.key["rank"] == 16)
    cell = row.cells["cola"]
    assert cell.status == "ok" and cell.value == pytest.approx(61.0) and len(cell.runs) == 2
    assert cell.printed == 64.36 and cell.diff == pytest.approx(61.0 - 64.36)
    assert row.params == 6144 and row.printed_params == "24.57K"
    assert row.cells["rte"].status == "missing" and row.avg.value is None  # an average needs every column


def test_lora_rule_is_the_median_over_seeds_of_the_best_epoch(tmp_path):
    best = [0.60, 0.64, 0.62, 0.70, 0.61]
    for seed, b in enumerate(best):
        fake_run(
            tmp_path,
            f"s{seed}",
            task="cola",
            method="lora",
            rank=8,
            seed=seed,
            lr=3e-4,
            experiment="glue_lora_paper",
            evals=[{"mcc": b - 0.05}, {"mcc": b}, {"mcc": b - 0.01}],
        )
    cell = next(r for r in build("lora_glue", load_runs(tmp_path)).rows if r.key["model"] == "roberta_large").cells
    assert cell["cola"].value == pytest.approx(100 * statistics.median(best)) and len(cell["cola"].runs) == 5
    assert cell["mnli"].status == "missing"


def test_llm_rule_is_the_final_model_not_the_best_epoch(tmp_path):
    evals = [{"gsm8k/accuracy": 0.70, "math/accuracy": 0.20}, {"gsm8k/accuracy": 0.60, "math/accuracy": 0.15}]
    fake_run(
        tmp_path,
        "m",
        task="metamath",
        method="lorasb",
        rank=96,
        seed=42,
        lr=1e-4,
        model="mistral_7b",
        experiment="math_lorasb",
        evals=evals,
        reported=evals[-1],
        params=2_064_384,
    )
    row = next(
        r
        for r in build("lorasb_math", load_runs(tmp_path)).rows
        if r.key == {"model": "mistral_7b", "method": "lorasb", "rank": 96, "experiment": "math_lorasb"}
    )
    assert row.cells["gsm8k"].value == pytest.approx(60.0) and row.cells["math"].value == pytest.approx(15.0)
    assert row.avg.value == pytest.approx(37.5) and row.cells["gsm8k"].printed == 63.38


def test_failed_and_missing_cells_are_marked_never_dropped(tmp_path):
    fake_run(
        tmp_path,
        "f",
        task="rte",
        method="loraxs",
        rank=8,
        seed=42,
        lr=1e-3,
        experiment="glue_lorasb",
        evals=[],
        status="failed",
    )
    fake_run(
        tmp_path,
        "g",
        task="cola",
        method="loraxs",
        rank=8,
        seed=42,
        lr=1e-3,
        experiment="glue_lorasb",
        evals=[{"mcc": 0.6}],
    )
    table = build("lorasb_glue", load_runs(tmp_path))
    row = next(r for r in table.rows if r.key.get("rank") == 8 and r.key["method"] == "loraxs")
    assert (row.cells["rte"].status, row.cells["cola"].status, row.cells["qnli"].status) == ("failed", "ok", "missing")
    md = markdown(table)
    assert "failed (75.23)" in md and "missing (92.44)" in md and "60.00 (61.07, -1.07)" in md
    assert len([line for line in md.splitlines() if line.startswith("| ")]) == 1 + len(table.rows)  # every row


def test_markdown_names_the_commits_and_wall_time_of_its_runs(tmp_path):
    common = dict(task="cola", method="loraxs", rank=8, lr=1e-3, experiment="glue_lorasb", evals=[{"mcc": 0.6}])
    fake_run(tmp_path, "a", seed=0, code={"commit": "a" * 40, "dirty": False}, wall_time_s=1800, **common)
    fake_run(tmp_path, "b", seed=1, code={"commit": "b" * 40, "dirty": True}, wall_time_s=5400, **common)
    fake_run(tmp_path, "c", seed=2, code=None, wall_time_s=None, status="failed", **common)  # not behind a cell
    md = markdown(build("lorasb_glue", load_runs(tmp_path)))
    assert md.splitlines()[-1] == (
        f"Runs: 2 finished, at commit {'a' * 12}, {'b' * 12}+changes; 2.00 h of wall time in all."
    )
    assert markdown(build("lorasb_glue", [])).splitlines()[-1] == "Runs: none finished."


def test_run_records_the_git_commit_it_ran_at(tmp_path):
    from loraxs.training.run_folder import code_version

    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("the project is not a git checkout here")
    version = code_version()
    assert version["commit"] == head.stdout.strip() and isinstance(version["dirty"], bool)
    assert code_version(tmp_path) is None  # not a checkout: nothing recorded, no error


def test_report_cli_writes_markdown_csv_and_plots(tmp_path):
    for rank, params in ((8, 6144), (16, 24576)):
        for task, metric in (
            ("cola", "mcc"),
            ("rte", "accuracy"),
            ("mrpc", "accuracy"),
            ("stsb", "pearson"),
            ("qnli", "accuracy"),
            ("sst2", "accuracy"),
        ):
            fake_run(
                tmp_path,
                f"{task}{rank}",
                task=task,
                method="lorasb",
                rank=rank,
                seed=42,
                lr=1e-3,
                experiment="glue_lorasb",
                evals=[{metric: 0.8 + rank / 1000}],
                params=params,
            )
    out = tmp_path / "report"
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments" / "report.py"),
            "table=lorasb_glue",
            f"runs={tmp_path}",
            f"out={out}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "12 of 48 cells from finished runs, 0 failed, 36 missing" in p.stdout
    rows = (out / "lorasb_glue.csv").read_text().splitlines()
    assert rows[0].startswith("table,row,model,method,rank,column,ours,printed,diff,status")
    assert (
        len(rows) == 1 + 8 * 7
        and "lorasb_glue,LoRA-SB r16,roberta_large,lorasb,16,avg,81.60,86.23,-4.63,ok,0,24576" in rows
    )
    for png in ("lorasb_glue_params.png", "lorasb_glue_loss.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    bad = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "report.py"), "table=nope"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: table=nope is unknown; valid: ")


def test_printed_figures_equal_methods_md():
    """Every number of METHODS.md §4's LoRA-SB tables is in printed_figures.csv, unchanged."""
    methods = SHARED_DATA.parent / "docs" / "METHODS.md"
    if not methods.is_file():
        pytest.skip(f"{methods} is absent")
    printed = printed_figures()
    text = methods.read_text()
    glue = text[text.index("LoRA-SB paper, GLUE dev") :].split("\n\n")[1]
    columns = ["params", "cola", "rte", "mrpc", "stsb", "qnli", "sst2", "avg"]
    names = {"Full FT": "full", "LoRA": "lora", "LoRA-XS": "loraxs", "LoRA-SB": "lorasb"}
    checked = 0
    for line in glue.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        method, rank = names[cells[0]], None if cells[1] == "–" else int(cells[1])
        for col, value in zip(columns, cells[2:]):
            assert printed[("lorasb_glue", "roberta_large", method, rank, col)] == value
            checked += 1
    cs = text[text.index("LoRA-SB paper, commonsense") :].split("\n\n")[1]
    columns = ["params", "boolq", "piqa", "social_i_qa", "hellaswag", "winogrande", "ARC-Easy", "ARC-Challenge"]
    columns += ["openbookqa", "avg"]
    for line in cs.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        method, rank = names[cells[0]], None if cells[1] == "–" else int(cells[1])
        for col, value in zip(columns, cells[2:]):
            assert printed[("lorasb_commonsense", "llama3_2_3b", method, rank, col)] == value
            checked += 1
    math_rows = text[text.index("LoRA-SB paper, math") :].split("\n\n")[1]
    for line in math_rows.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        model = {"Mistral-7B": "mistral_7b", "Gemma-2 9B": "gemma2_9b"}[cells[0]]
        ranks = [None] if cells[2] == "–" else [int(r) for r in re.split(r"\s*/\s*", cells[2])]
        for col, values in zip(("params", "gsm8k", "math"), cells[3:]):
            for rank, value in zip(ranks, re.split(r"\s*/\s*", values)):
                assert printed[("lorasb_math", model, names[cells[1]], rank, col)] == value
                checked += 1
    assert checked == 64 + 80 + 48


def test_columns_from_the_same_runs_share_one_loss_panel(tmp_path):
    from loraxs.report.render import loss_panels

    evals = [{f"{b}/accuracy": 0.5 for b in ("boolq", "piqa", "social_i_qa", "hellaswag", "winogrande")}]
    evals[0].update({"ARC-Easy/accuracy": 0.5, "ARC-Challenge/accuracy": 0.5, "openbookqa/accuracy": 0.5})
    evals[0]["average/accuracy"] = 0.5
    for rank in (16, 64):
        fake_run(
            tmp_path,
            f"cs{rank}",
            task="commonsense",
            method="loraxs",
            rank=rank,
            seed=0,
            lr=2e-3,
            experiment="mini_commonsense",
            model="smollm2_135m",
            evals=evals,
            table="mini_commonsense",
        )
    table = build("mini_commonsense", load_runs(tmp_path))
    assert loss_panels(table) == [table.columns] and len(table.columns) == 8  # one run per row: one panel
    glue = build("lorasb_glue", load_runs(tmp_path))
    assert loss_panels(glue) == [glue.columns]  # no runs at all: one empty panel


def test_a_table_without_an_average_has_no_avg_column_and_the_base_row_no_params():
    """mini_lm (perplexity, bpc): no avg column in the Markdown; the max_steps: 0 row counts no parameters."""
    from loraxs.report.runs import Run

    def run(method, max_steps, ppl):
        m = {"reported": {"perplexity": ppl, "bpc": 1.0}, "trainable": {"adapter": 100, "total": 100}}
        return Run(Path("x"), "finished", "smollm2_135m", None, "wikitext2", method, 8 if method == "lora" else 16,
                   0, None, metrics={**m, "table": "mini_lm"}, max_steps=max_steps)  # fmt: skip

    runs = [run("lora", 0, 20.0), run("lora", None, 17.0), run("loraxs", None, 18.0)]
    table = build("mini_lm", runs, printed={})
    assert [(r.label, r.cells["perplexity"].value, r.params) for r in table.rows] == [
        ("Base model (no fine-tuning)", 20.0, None),
        ("LoRA r8", 17.0, 100),
        ("LoRA-XS r16", 18.0, 100),
    ]
    header = markdown(table).splitlines()[4]
    assert header == "| method | # Params (ours / printed) | perplexity | bpc |"
