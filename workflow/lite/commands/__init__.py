"""One module per ``lite`` command; see ``lite/cli.py``."""
