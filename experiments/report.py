"""Paper tables from finished runs: ``python experiments/report.py table=lorasb_glue [runs=outputs] [out=results/...]``.

Reads every run folder under ``runs`` (default ``outputs``), builds the table with its paper's selection rule
(``loraxs/report/tables.yaml``), sets each cell beside the printed figure (``printed_figures.csv``) and writes
``<out>/<table>.md``, ``.csv``, ``_params.png`` (accuracy against trainable parameters) and ``_loss.png``
(training-loss curves); default ``out`` is ``results/<table>``. ``table=list`` lists the tables. Bad arguments
are one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("table", "runs", "out")


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str]) -> None:
    args = {}
    for a in argv:
        key, eq, value = a.partition("=")
        if not eq or key not in KEYS:
            fail(f"{a} is not an argument; valid: {', '.join(k + '=...' for k in KEYS)}")
        args[key] = value
    from loraxs.report import build, definitions, load_runs, write

    defs = definitions()
    name = args.get("table")
    if name in (None, "list"):
        for table, d in defs.items():
            print(f"{table}: {d['title']}")
        return
    if name not in defs:
        fail(f"table={name} is unknown; valid: {', '.join(sorted(defs))}")
    runs_dir = Path(args.get("runs", ROOT / "outputs"))
    if not runs_dir.is_dir():
        fail(f"runs={runs_dir} is not a folder; give the output folder of the runs (paths.output_dir)")
    table = build(name, load_runs(runs_dir), defs)
    paths = write(table, args.get("out", ROOT / "results" / name))
    cells = [c for r in table.rows for c in r.cells.values()]
    print(
        f"{name}: {sum(c.status == 'ok' for c in cells)} of {len(cells)} cells from finished runs, "
        f"{sum(c.status == 'failed' for c in cells)} failed, {sum(c.status == 'missing' for c in cells)} missing; "
        f"written: {', '.join(str(p) for p in paths)}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
