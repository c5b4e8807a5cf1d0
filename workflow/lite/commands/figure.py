"""Draw one of the paper's figures as PDF plus a PNG twin, with its caption from the run (.caption.rst).

    lite figure fig5 --out results/figures/fig5.pdf results/tiny12/analysis/it/vic/alignment.csv \\
        results/tiny12/analysis/lite/vic/alignment.csv
    lite figure fig9 --evalset vic --out results/figures/fig9.pdf JUDGMENTS... GENERATIONS...

Inputs are recognised by their fields (generation, trace, judgment or eval records; alignment,
calibration or similarity CSVs), never by their paths. The list below says what each figure needs
and which options it takes; the resolved config is written beside each output.
"""

from __future__ import annotations

from functools import partial

from lite.report import options

add_arguments = partial(options.add_arguments, kind="figure")
run = partial(options.run, kind="figure")
