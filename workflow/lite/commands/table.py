"""Write one of the paper's tables as CSV plus Markdown and HTML twins, with its caption from the run.

    lite table table1 --out results/tables/table1.csv results/tiny12/generations/lite/*/final.jsonl \\
        results/tiny12/generations/lite/*/dynamic-paper.jsonl

Inputs are recognised by their fields (generation, trace, judgment or eval records; alignment,
calibration or similarity CSVs), never by their paths. The list below says what each table needs
and which options it takes; the resolved config is written beside each output.
"""

from __future__ import annotations

from functools import partial

from lite.report import options

add_arguments = partial(options.add_arguments, kind="table")
run = partial(options.run, kind="table")
