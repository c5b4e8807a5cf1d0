"""Token usage and estimated cost of one judging run, appended as a row to a CSV table.

Prices are an ESTIMATE from a small table (USD per million tokens, standard tier, no prompt
caching), by model id; a dated snapshot ("claude-sonnet-4-5-20250929") prices as its alias.
Source: https://platform.claude.com/docs/en/about-claude/pricing ("Model pricing"; "Batch
processing": batches cost 50 %), read on 2026-11-28; the 5.5 models' prices from a pricing table
that cites that page (docs.rs, synaps_cli::pricing). A model missing from the table gets no
estimate (empty cells), never a guess. Check current prices before budgeting.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
from pathlib import Path

from lite.io import atomic_write

_SNAPSHOT = re.compile(r"-\d{8}$")
PRICE_SOURCE = "platform.claude.com/docs/en/about-claude/pricing (read 2026-11-28; estimate)"
BATCH_DISCOUNT = 0.5
# model-id prefix -> (input, output) USD per million tokens.
PRICES_USD_PER_MTOK: dict[str, tuple[float, float]] = {
    "claude-fable-5-1": (10.0, 50.0),
    "claude-fable-5": (10.0, 50.0),
    "claude-mythos-5-1": (10.0, 50.0),
    "claude-mythos-5": (10.0, 50.0),
    "claude-opus-5-5": (4.0, 20.0),
    "claude-opus-5": (5.0, 25.0),
    "claude-opus-4-8": (5.0, 25.0),
    "claude-opus-4-7": (5.0, 25.0),
    "claude-opus-4-6": (5.0, 25.0),
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-5-5": (2.0, 10.0),
    "claude-sonnet-5": (2.0, 10.0),
    "claude-sonnet-4-6": (3.0, 15.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-haiku-5-5": (0.1, 0.5),  # prompts up to 100k tokens (a judge prompt is far below)
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "claude-3-haiku": (0.25, 1.25),
}

COLUMNS = (
    "finished_at",
    "output",
    "judge",
    "model",
    "api_version",
    "mode",
    "asks",
    "unique_calls",
    "cached",
    "calls_made",
    "calls_failed",
    "input_tokens",
    "output_tokens",
    "usd_per_mtok_input",
    "usd_per_mtok_output",
    "batch_discount",
    "est_cost_usd",
    "est_cost_usd_cached",
    "price_source",
)


def price_for(model: str) -> tuple[float, float] | None:
    """(input, output) USD per million tokens of ``model`` (or its undated alias), or None."""
    # Only an exact id or its dated snapshot ("-YYYYMMDD") matches: a new minor version
    # ("claude-opus-4-9") gets no price rather than its neighbour's.
    return PRICES_USD_PER_MTOK.get(_SNAPSHOT.sub("", model))


def estimate_usd(model: str, input_tokens: int, output_tokens: int, batch: bool) -> float | None:
    price = price_for(model)
    if price is None:
        return None
    usd = (input_tokens * price[0] + output_tokens * price[1]) / 1e6
    return usd * BATCH_DISCOUNT if batch else usd


@dataclasses.dataclass
class Usage:
    """Tokens of a set of calls, split by how they were billed."""

    input_tokens: int = 0
    output_tokens: int = 0
    batch_input_tokens: int = 0
    batch_output_tokens: int = 0

    def add(self, usage: dict, batch: bool) -> None:
        if batch:
            self.batch_input_tokens += usage.get("input_tokens", 0)
            self.batch_output_tokens += usage.get("output_tokens", 0)
        else:
            self.input_tokens += usage.get("input_tokens", 0)
            self.output_tokens += usage.get("output_tokens", 0)

    def usd(self, model: str) -> float | None:
        standard = estimate_usd(model, self.input_tokens, self.output_tokens, batch=False)
        batch = estimate_usd(model, self.batch_input_tokens, self.batch_output_tokens, batch=True)
        return None if standard is None or batch is None else standard + batch


@dataclasses.dataclass
class RunStats:
    """What one run asked, found in the cache, paid for and lost."""

    asks: int = 0  # orders to judge (2 per instance)
    unique_calls: int = 0  # distinct requests (identical prompts are asked once)
    cached: int = 0  # answered from the cache: no call, no cost
    calls_made: int = 0  # paid calls that succeeded in this run
    calls_failed: int = 0  # calls that failed after all retries (recorded, not cached)
    reasks: int = 0  # of calls_made: second calls for replies whose scores could not be read
    new: Usage = dataclasses.field(default_factory=Usage)  # paid in this run
    cached_usage: Usage = dataclasses.field(default_factory=Usage)  # paid in earlier runs


def cost_row(stats: RunStats, *, finished_at: str, output: str, settings: dict, mode: str) -> dict:
    model = settings["model"] or ""
    price = price_for(model) if model else None
    est = stats.new.usd(model) if model else None
    est_cached = stats.cached_usage.usd(model) if model else None
    return {
        "finished_at": finished_at,
        "output": output,
        "judge": settings["name"],
        "model": model,
        "api_version": settings["api_version"] or "",
        "mode": mode,
        "asks": stats.asks,
        "unique_calls": stats.unique_calls,
        "cached": stats.cached,
        "calls_made": stats.calls_made,
        "calls_failed": stats.calls_failed,
        "input_tokens": stats.new.input_tokens + stats.new.batch_input_tokens,
        "output_tokens": stats.new.output_tokens + stats.new.batch_output_tokens,
        "usd_per_mtok_input": "" if price is None else price[0],
        "usd_per_mtok_output": "" if price is None else price[1],
        "batch_discount": BATCH_DISCOUNT if mode == "batches" else "",
        "est_cost_usd": "" if est is None else round(est, 6),
        "est_cost_usd_cached": "" if est_cached is None else round(est_cached, 6),
        "price_source": PRICE_SOURCE if price is not None else "no price for this model",
    }


def append_cost_row(path: str | os.PathLike, row: dict) -> None:
    """Add one run's row to the CSV table (rewritten atomically, header once)."""
    path = Path(path)
    rows = []
    if path.is_file():
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    rows.append(row)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue())
