"""Serve the human rating page (the paper's Table 5) and store every rating in SQLite as it is given.

    lite annotate --evalset vicuna --systems lite.final,lite.dynamic-paper
    lite annotate                      # everything from config.yaml's human section (or its defaults)

Raters open the printed URL, sign in with a name and score two responses per instruction from
1 to 10 (systems hidden, order drawn per rater), or skip. Ratings go to
results/<model>/human/<evalset>.sqlite (--db), created from the two systems' generation records
on first use. Binds 127.0.0.1 on a free port unless --host/--port say otherwise; there are no
passwords, so expose it only on a network you trust. Ctrl-C stops it; nothing is lost.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from lite.human.server import AnnotationServer
from lite.human.settings import HumanSettings
from lite.human.store import Store
from lite.io import InputError
from lite.judge.records import load_pair
from lite.plan import Plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default="config.yaml", help="workflow config whose human section gives the defaults"
    )
    parser.add_argument("--model", default=None, help="base model (default: human.model or the main model)")
    parser.add_argument("--evalset", default=None, help="eval set (default: human.evalset or the first)")
    parser.add_argument(
        "--systems",
        default=None,
        help="two systems, A,B (default: human.systems or lite.final,lite.<dynamic>)",
    )
    parser.add_argument(
        "--raters", default=None, help="comma-separated names allowed to sign in (default: anyone)"
    )
    parser.add_argument(
        "--n", type=int, default=None, help="rate the first N prompts (default: human.n or all)"
    )
    parser.add_argument(
        "--db", default=None, help="ratings database (default results/<model>/human/<evalset>.sqlite)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (%(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")


def settings_from(args: argparse.Namespace) -> HumanSettings:
    """The config's human section (if the config exists) with the command line on top."""
    config = {}
    if Path(args.config).is_file():
        with open(args.config, encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
    if config.get("models") and config.get("data"):
        base = HumanSettings.from_config(config)
    elif args.model and args.evalset and args.systems:
        base = None
    else:
        raise InputError(f"{args.config}: no workflow config; give --model, --evalset and --systems")
    systems = tuple(args.systems.split(",")) if args.systems else base.systems
    raters = tuple(r for r in args.raters.split(",") if r.strip()) if args.raters else None
    return HumanSettings(
        model=args.model or base.model,
        evalset=args.evalset or base.evalset,
        systems=systems,
        raters=raters if raters is not None else (base.raters if base else ()),
        n=args.n if args.n is not None else (base.n if base else None),
    )


def run(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    human = settings_from(args)
    paths = []
    for system in human.systems:
        tuning, decoder = system.split(".", 1)
        path = Path(Plan.generation(human.model, tuning, human.evalset, decoder))
        if not path.is_file():
            raise InputError(f"{path}: no generation records of {system}; build them with `snakemake {path}`")
        paths.append(path)
    db = args.db or human.database
    store = Store.create_or_open(db, load_pair(*paths), n=human.n, allowed_raters=human.raters)
    server = AnnotationServer(store, study=human.evalset, host=args.host, port=args.port)
    # The URL goes to stdout, flushed, so a script (or a test) can read it; the rest to stderr.
    print(server.url, flush=True)
    print(
        f"lite annotate: rating {human.systems[0]} vs {human.systems[1]} ({human.model}, {human.evalset}) "
        f"into {db}; Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
