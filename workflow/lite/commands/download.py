"""Fetch a pinned source file and verify its checksum (sha256, or git blob id for Alpaca).

    lite download --source alpaca --out results/data/sources/alpaca_data.json
    lite download --source koala --out koala_test_set.jsonl --local-path /mnt/copies/koala_test_set.jsonl

Sources and their pins: lite.download.SOURCES. ``--local-path`` takes a copy made elsewhere (an
offline cluster) and verifies it the same way. On a checksum mismatch nothing is written to
``--out``. The resolved settings go to ``OUT.config.json``.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lite.download import SOURCES

    parser.add_argument("--source", required=True, choices=list(SOURCES), help="which pinned file")
    parser.add_argument("--out", required=True, help="where to put the verified file")
    parser.add_argument("--local-path", help="verify and copy this local file instead of downloading")
    parser.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds")


def run(args: argparse.Namespace) -> None:
    from lite.download import fetch, get_source
    from lite.io import save_resolved_config

    source = get_source(args.source)
    out = fetch(source, args.out, local_path=args.local_path, timeout=args.timeout)
    save_resolved_config(out, {"source": source, "out": str(out), "local_path": args.local_path})
    print(f"{source.name}: {out} verified ({source.checksum})", file=sys.stderr)
