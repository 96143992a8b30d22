"""A built :class:`~loraxs.report.tables.Table` as Markdown, CSV and PNG plots (matplotlib, headless)."""

from __future__ import annotations

import csv
import io
import re
import textwrap
from pathlib import Path

from .tables import Cell, Table, method_label


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def _params(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def parse_params(text: str | None) -> float | None:
    """``"6.14K"``, ``"2.06M"``, ``"7.24B"`` → a count."""
    m = re.fullmatch(r"([\d.]+)([KMB]?)", (text or "").strip())
    return None if m is None else float(m.group(1)) * {"": 1, "K": 1e3, "M": 1e6, "B": 1e9}[m.group(2)]


def _cell(c: Cell) -> str:
    printed = "" if c.printed is None else f"{c.printed:.2f}"
    if c.status != "ok":
        return f"{c.status} ({printed})" if printed else c.status
    if c.printed is None:
        return f"{c.value:.2f}"
    return f"{c.value:.2f} ({printed}, {c.diff:+.2f})"


def markdown(table: Table) -> str:
    """Cells read ``ours (printed, ours − printed)``; ``missing`` / ``failed`` cells say so."""
    head = ["method", "# Params (ours / printed)", *table.columns, *(["avg"] if table.average else [])]
    lines = [
        f"### {table.title}",
        "",
        f"Rule: `{table.rule}`. Cells: ours (printed, ours − printed); `missing`: no run, `failed`: no run finished.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in table.rows:
        params = f"{_params(row.params)} / {row.printed_params or '–'}"
        cells = [_cell(row.cells[c]) for c in table.columns] + ([_cell(row.avg)] if table.average else [])
        lines.append("| " + " | ".join([row.label, params, *cells]) + " |")
    return "\n".join([*lines, "", provenance(table)]) + "\n"


def provenance(table: Table) -> str:
    """One line: how many finished runs the cells come from, the git commits they ran at (``+changes``: with
    uncommitted changes to tracked files; ``unknown``: recorded no commit) and their summed wall time."""
    runs = {r.folder: r for row in table.rows for c in row.cells.values() for r in c.runs}.values()
    if not runs:
        return "Runs: none finished."
    commits = sorted(
        {
            (r.metrics.get("code") or {}).get("commit", "unknown")[:12]
            + ("+changes" if (r.metrics.get("code") or {}).get("dirty") else "")
            for r in runs
        }
    )
    hours = sum(float(r.metrics.get("wall_time_s") or 0) for r in runs) / 3600
    return f"Runs: {len(runs)} finished, at commit {', '.join(commits)}; {hours:.2f} h of wall time in all."


def csv_text(table: Table) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(
        ["table", "row", "model", "method", "rank", "column", "ours", "printed", "diff", "status", "runs", "params"]
    )
    for row in table.rows:
        key = [table.name, row.label, row.key["model"], row.key["method"], row.key.get("rank", "")]
        for col, c in [*((k, row.cells[k]) for k in table.columns), *([("avg", row.avg)] if table.average else [])]:
            values = [_num(c.value), _num(c.printed), _num(c.diff), c.status, len(c.runs), row.params or ""]
            w.writerow([*key, col, *values])
    return out.getvalue()


def plot_params(table: Table, path: Path) -> Path:
    """Average over the columns against trainable parameters (log scale), one line per method; the printed
    averages dashed in the same colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    methods = sorted({r.key["method"] for r in table.rows})
    for i, method in enumerate(methods):
        color = f"C{i}"
        rows = [r for r in table.rows if r.key["method"] == method]
        label = method_label(method) + (
            f" {rows[0].key['model']}"
            if len({r.key["model"] for r in rows}) < len({r.key["model"] for r in table.rows})
            else ""
        )
        ours = sorted((r.params, r.avg.value) for r in rows if r.params and r.avg.value is not None)
        if ours:
            ax.plot(*zip(*ours), "o-", color=color, label=f"{label} (ours)")
        printed = sorted(
            (parse_params(r.printed_params), r.avg.printed)
            for r in rows
            if parse_params(r.printed_params) and r.avg.printed is not None
        )
        if printed:
            ax.plot(*zip(*printed), "s--", color=color, alpha=0.6, label=f"{label} (printed)")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (head excluded; log scale)")
    n = len(table.columns)
    ax.set_ylabel(
        table.columns[0]
        if n == 1 or not table.average
        else f"average over {', '.join(table.columns)}"
        if n <= 3
        else f"average of the {n} columns"
    )
    ax.set_title("\n".join(textwrap.wrap(table.title, 80)), fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def loss_panels(table: Table) -> list[list[str]]:
    """The columns of each loss panel: columns whose cells come from the same runs (an LLM table, one run per row)
    share one panel; a GLUE table has a panel per task."""
    panels: dict[tuple, list[str]] = {}
    for col in table.columns:
        key = tuple(str(r.cells[col].runs[-1].folder) if r.cells[col].runs else None for r in table.rows)
        panels.setdefault(key, []).append(col)
    return list(panels.values())


def plot_losses(table: Table, path: Path) -> Path:
    """Training loss (mean of each logging window) of the run behind each cell, one panel per column; columns
    whose cells come from the same runs (an LLM table: one run per row) share one panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = loss_panels(table)
    n = len(groups)
    cols = min(n, 3)
    n_rows = (n + cols - 1) // cols
    width = max(4.2 * cols, 7.5)  # one panel still leaves room for the title and the legend
    fig, axes = plt.subplots(n_rows, cols, figsize=(width, 3.0 * n_rows + 1.2), squeeze=False)
    axes = list(axes.flat)
    handles: dict[str, object] = {}
    for ax, group in zip(axes, groups):
        col = group[0]
        drawn = False
        for i, row in enumerate(table.rows):
            runs = row.cells[col].runs
            if runs and runs[-1].loss_curve:
                run = runs[-1]
                every = run.log_every or 1
                xs = [every * (j + 1) for j in range(len(run.loss_curve))]
                style = ("-" if i < 10 else "--") + ("o" if len(run.loss_curve) < 8 else "")  # short runs: markers
                (line,) = ax.plot(xs, run.loss_curve, style, color=f"C{i % 10}", label=row.label, lw=1.2)
                handles.setdefault(row.label, line)
                drawn = True
        ax.set_title(
            "\n".join(textwrap.wrap(", ".join(group) + (" (the same runs)" if len(group) > 1 else ""), 60)), fontsize=9
        )
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.grid(True, alpha=0.3)
        if not drawn:
            ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes)
    for ax in axes[n:]:
        ax.axis("off")
    fig.suptitle("\n".join(textwrap.wrap(table.title, int(width * 14))), fontsize=9)
    ncol = max(1, min(5, len(handles), int(width / 1.5)))
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=ncol, fontsize=7)
    fig.tight_layout(rect=(0, 0.06 + 0.03 * ((len(handles) - 1) // ncol), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write(table: Table, out_dir: str | Path) -> list[Path]:
    """``<out>/<name>.md``, ``.csv``, ``_params.png``, ``_loss.png`` (text written atomically)."""
    from ..io import write_text_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{table.name}.md", out / f"{table.name}.csv"]
    write_text_atomic(paths[0], markdown(table))
    write_text_atomic(paths[1], csv_text(table))
    paths.append(plot_params(table, out / f"{table.name}_params.png"))
    paths.append(plot_losses(table, out / f"{table.name}_loss.png"))
    return paths
