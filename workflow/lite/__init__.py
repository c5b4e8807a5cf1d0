"""LITE: intermediate-layer decoding for instruction-tuned LLaMA models.

The package behind the Snakemake workflow of this repository. Every stage of the workflow is one
command of the ``lite`` CLI (``lite --help``); the file formats the stages exchange are described
in ``docs/records.md``.
"""

__version__ = "0.1.0"
