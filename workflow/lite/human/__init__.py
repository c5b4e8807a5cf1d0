"""Human ratings (the paper's Table 5): a rating page, the SQLite file it writes, and table5.

- :mod:`lite.human.settings`: the config's ``human`` section (which pair, eval set and raters).
- :mod:`lite.human.store`: the ratings database, ``results/<model>/human/<evalset>.sqlite``.
- :mod:`lite.human.server`: the page ``lite annotate`` serves (standard library only).
- :mod:`lite.human.agreement`: Krippendorff's alpha and Spearman's rho.
- :mod:`lite.human.table5`: per rater and aggregate scores, agreement between raters, with the
  workflow's judge and with the optional second judge.

Nothing here imports torch. ``docs/human.md`` describes the workflow.
"""
