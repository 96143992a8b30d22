"""Paper tables from run folders: each cell is chosen by the paper's rule and set beside the printed figure.

Definitions (rows, columns, rule) live in ``tables.yaml`` and the printed figures in ``printed_figures.csv``, both
beside this module; see ``tables.yaml`` for the rules. A cell is ``ok`` (a value from finished runs), ``failed``
(runs exist but none finished) or ``missing`` (no run): never silently dropped.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .runs import Run

HERE = Path(__file__).parent
RULES = ("best", "median_seeds", "final")


@dataclass
class Cell:
    value: float | None  # ours, in the printed unit (x scale)
    printed: float | None
    status: str  # ok | missing | failed
    runs: list[Run] = field(default_factory=list)  # the finished runs the value comes from

    @property
    def diff(self) -> float | None:
        return None if self.value is None or self.printed is None else self.value - self.printed


@dataclass
class Row:
    label: str
    key: dict[str, Any]
    cells: dict[str, Cell]
    params: int | None
    printed_params: str | None
    avg: Cell


@dataclass
class Table:
    name: str
    title: str
    rule: str
    columns: list[str]
    rows: list[Row]
    average: bool = True  # false: no average column (columns in other units); the plot shows the first column


def definitions(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    import yaml

    return yaml.safe_load(Path(path or HERE / "tables.yaml").read_text())


def printed_figures(path: str | Path | None = None) -> dict[tuple, str]:
    """``{(table, model, method, rank, column): value}`` from the CSV (values as printed, strings)."""
    out = {}
    with open(path or HERE / "printed_figures.csv", newline="") as f:
        for r in csv.DictReader(f):
            rank = int(r["rank"]) if r["rank"] else None
            out[(r["table"], r["model"], r["method"], rank, r["column"])] = r["value"]
    return out


def _matches(run: Run, row: dict[str, Any], task: str, table: str | None) -> bool:
    return (
        run.task == task
        and run.method == row["method"]
        and (row["method"] == "full" or run.rank == row.get("rank"))
        and run.model == row["model"]
        and ("experiment" not in row or run.experiment == row["experiment"])
        and ("max_steps" not in row or run.max_steps == row["max_steps"])
        and (table is None or run.metrics.get("table") == table)
    )


def select(runs: list[Run], metric: str, rule: str) -> float | None:
    """The paper's number for one cell from its finished runs (see ``tables.yaml``)."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; valid: {', '.join(RULES)}")
    value = (lambda r: r.reported(metric)) if rule == "final" else (lambda r: r.best(metric))
    scored = [(r, value(r)) for r in runs if value(r) is not None]
    if not scored:
        return None
    if rule == "best":
        return max(v for _, v in scored)
    per_seed: dict[Any, float] = {}
    for r, v in scored:  # the best run of each seed's grid
        per_seed[r.seed] = max(v, per_seed.get(r.seed, v))
    return statistics.median(per_seed.values())


METHOD_NAMES = {
    "full": "Full FT",
    "lora": "LoRA",
    "loraxs": "LoRA-XS",
    "loraxs_random": "LoRA-XS (random)",
    "lorasb": "LoRA-SB",
}


def method_label(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def _label(row: dict[str, Any]) -> str:
    if row.get("label"):
        return str(row["label"])
    return method_label(row["method"]) + (f" r{row['rank']}" if row.get("rank") else "")


def build(name: str, runs: list[Run], defs: dict | None = None, printed: dict | None = None) -> Table:
    """The table ``name`` of ``tables.yaml`` from ``runs`` (``load_runs``)."""
    defs = defs if defs is not None else definitions()
    if name not in defs:
        raise ValueError(f"unknown table {name!r}; valid: {', '.join(sorted(defs))}")
    d = defs[name]
    printed = printed if printed is not None else printed_figures()
    scale, table_filter = float(d.get("scale", 1)), name if d.get("match_table") else None
    rows = []
    for row in d["rows"]:
        cells = {}
        for col in d["columns"]:
            matched = [r for r in runs if _matches(r, row, col["task"], table_filter)]
            done = [r for r in matched if r.finished]
            value = select(done, col["metric"], d["rule"])
            status = "ok" if value is not None else ("failed" if matched else "missing")
            pv = printed.get((name, row["model"], row["method"], row.get("rank"), col["key"]))
            cells[col["key"]] = Cell(
                None if value is None else value * scale, None if pv is None else float(pv), status, done
            )
        ok = [c.value for c in cells.values() if c.value is not None]
        avg_printed = printed.get((name, row["model"], row["method"], row.get("rank"), "avg"))
        avg = Cell(
            sum(ok) / len(ok) if len(ok) == len(cells) else None,
            None if avg_printed is None else float(avg_printed),
            "ok" if len(ok) == len(cells) else "missing",
        )
        params = next((r.params for c in cells.values() for r in c.runs if r.params is not None), None)
        if row.get("max_steps") == 0:
            params = None  # the untrained base model: its (zero) adapter is not a trained parameter count
        if d.get("average", True) is False:
            avg = cells[d["columns"][0]["key"]]
        label = _label(row) + (f" ({row['model']})" if len({r["model"] for r in d["rows"]}) > 1 else "")
        rows.append(
            Row(
                label,
                row,
                cells,
                params,
                printed.get((name, row["model"], row["method"], row.get("rank"), "params")),
                avg,
            )
        )
    return Table(
        name, d["title"], d["rule"], [c["key"] for c in d["columns"]], rows, d.get("average", True) is not False
    )
