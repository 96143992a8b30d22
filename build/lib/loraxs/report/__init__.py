"""The results layer: paper tables from run folders, with each paper's selection rule, beside the printed figures.

Reads run folders (``config.yaml`` + ``metrics.json``) and knows nothing of training::

    from loraxs.report import build, load_runs, write
    table = build("lorasb_glue", load_runs("outputs/runs"))
    write(table, "results/lorasb_glue")          # .md, .csv, _params.png, _loss.png
"""

from .render import csv_text, markdown, write
from .runs import Run, load_runs
from .tables import RULES, Table, build, definitions, printed_figures, select

__all__ = [
    "RULES",
    "Run",
    "Table",
    "build",
    "csv_text",
    "definitions",
    "load_runs",
    "markdown",
    "printed_figures",
    "select",
    "write",
]
