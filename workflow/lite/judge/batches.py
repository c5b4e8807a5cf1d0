"""Message Batches mode (half price): submit, poll, collect, and resume a batch after a crash.

Each submitted batch gets a manifest, ``<cache>/batches/<batch id>.json``, written as soon as the
API returns the batch id and holding what is needed to file its results in the cache (custom id
= cache key, and each call's identity). Every run first finishes the batches whose manifests are
still there and hold any of its keys, so a batch submitted before a crash is polled and
collected, never paid twice. Only keys still uncached after that are submitted. Requests that
errored, expired or were canceled in a batch cost nothing, are recorded as failures and are
resubmitted by the next run.

The one unprotected moment is between the API accepting a batch and the manifest reaching disk
(one local file write); a crash exactly there would resubmit those requests.

Parallel jobs: a job claims the keys it submits (``JudgeCache.claim``) until their results are in
the cache; keys another live job has claimed are left to that job's batch, and this job waits
for their entries (or for the claim to end without one: those are asked by the next run). Whoever
files a batch's results releases its claims, so a batch resumed after a crash leaves none behind.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import anthropic
from tqdm import tqdm

from lite.io import read_json, write_json
from lite.judge.api import ApiJudge, now
from lite.judge.messages_api import entry_from_message

log = logging.getLogger(__name__)

# The API allows 100,000 requests (256 MB) per batch; smaller batches finish and resume sooner.
MAX_REQUESTS_PER_BATCH = 10_000
# A batch's claims may stand as long as the API may take (24 h), plus slack; claims of a process on
# this host that has ended are taken over at once.
BATCH_CLAIM_LIFETIME_S = 25 * 3600.0


def run_batches(judge: ApiJudge, pending: dict[str, tuple[dict, dict]]) -> tuple[dict, dict]:
    """Results of ``pending`` (key -> (identity, params)) via batches: (entries, errors) by key.

    ``judge`` is the Claude judge (:class:`lite.judge.claude.ClaudeJudge`, which calls this): its
    anthropic client, settings, cache and run statistics.
    """
    entries: dict[str, dict] = {}
    errors: dict[str, str] = {}
    batch_dir = judge.cache.batch_dir
    for manifest in sorted(batch_dir.glob("*.json")):
        # Only batches holding keys of this run: parallel judge jobs sharing the cache do not
        # wait for each other's batches (each job collects its own after a crash).
        if pending.keys().isdisjoint(read_json(manifest)["identities"]):
            continue
        log.info("resuming batch %s submitted by an earlier run", manifest.stem)
        _finish(judge, manifest, entries, errors)
    # Resumed batches may have answered keys of this run; whatever is still uncached is asked anew
    # (failures of a resumed batch cost nothing and get one more try here).
    remaining = [key for key in pending if key not in entries and judge.cache.get(key) is None]
    for key in remaining:
        errors.pop(key, None)
    mine = [key for key in remaining if judge.cache.claim(key, BATCH_CLAIM_LIFETIME_S)]
    claimed = set(mine)
    try:
        submitted = []
        sampling = judge.config.sampling_params
        for start in range(0, len(mine), MAX_REQUESTS_PER_BATCH):
            chunk = mine[start : start + MAX_REQUESTS_PER_BATCH]
            requests = [{"custom_id": key, "params": {**pending[key][1], **sampling}} for key in chunk]
            batch = judge.client.messages.batches.create(requests=requests)
            manifest = batch_dir / f"{batch.id}.json"
            write_json(
                manifest,
                {
                    "batch_id": batch.id,
                    "submitted_at": now(),
                    "model": judge.config.model,
                    "api_version": judge.api_version,
                    "identities": {key: pending[key][0] for key in chunk},
                },
            )
            log.info("submitted batch %s with %d requests", batch.id, len(chunk))
            submitted.append(manifest)
        for manifest in submitted:
            _finish(judge, manifest, entries, errors)
    finally:
        for key in mine:
            judge.cache.release(key)
    _wait_for_other_jobs(judge, [key for key in remaining if key not in claimed], entries)
    for key in remaining:
        if key not in entries:
            errors.setdefault(key, "no result for this request in its batch")
            judge.stats.calls_failed += 1
    return entries, errors


def _wait_for_other_jobs(judge: ApiJudge, keys: list[str], entries: dict) -> None:
    """Entries of ``keys``, which other jobs' batches are answering, as those file them."""
    if keys:
        log.info("%d request(s) are in another judge job's batch; waiting for its results", len(keys))
    waiting = keys
    while waiting:
        still = []
        for key in waiting:
            entry = judge.cache.get(key)
            if entry is None:
                if not judge.cache.claim(key, BATCH_CLAIM_LIFETIME_S):
                    still.append(key)
                    continue
                judge.cache.release(key)
                entry = judge.cache.get(key)  # filed as its claim ended; else the next run asks
                if entry is None:
                    continue
            entries[key] = entry
            judge.count_cached(entry)
        waiting = still
        if waiting:
            time.sleep(judge.config.poll_interval_s)


def _poll(judge: ApiJudge, batch_id: str, total: int) -> bool:
    """Wait for the batch to end; False when the API no longer knows it."""
    bar = tqdm(total=total, desc=f"batch {batch_id}", unit="req", file=sys.stderr)
    try:
        while True:
            try:
                batch = judge.client.messages.batches.retrieve(batch_id)
            except anthropic.NotFoundError:
                return False
            counts = batch.request_counts
            bar.n = counts.succeeded + counts.errored + counts.canceled + counts.expired
            bar.set_postfix(status=batch.processing_status, processing=counts.processing)
            if batch.processing_status == "ended":
                return True
            time.sleep(judge.config.poll_interval_s)
    finally:
        bar.close()


def _finish(judge: ApiJudge, manifest: Path, entries: dict, errors: dict) -> None:
    """Poll one batch to its end, file its results in the cache, release the claims on its keys and
    retire its manifest."""
    data = read_json(manifest)
    batch_id, identities = data["batch_id"], data["identities"]
    if _poll(judge, batch_id, len(identities)):
        for item in judge.client.messages.batches.results(batch_id):
            key = item.custom_id
            if key not in identities:
                log.warning("batch %s returned unknown custom_id %s; ignored", batch_id, key)
                continue
            result = item.result
            if result.type == "succeeded":
                entry = entry_from_message(result.message, identities[key], "batch")
                judge.cache.put(key, entry)
                entries[key] = entry
                judge.stats.calls_made += 1
                judge.stats.new.add(entry["usage"], batch=True)
            else:
                errors[key] = _describe_result(result)
        retired = "done"
    else:
        log.warning(
            "batch %s is unknown to the API (expired or deleted); its requests will be resubmitted", batch_id
        )
        retired = "lost"
    # The batch is no longer in flight, so its claims protect nothing. A batch resumed after a
    # crash has no other owner to release them, and left standing they would hold the next run's
    # retries of its failed keys until they are taken over (a day, from another host).
    for key in identities:
        judge.cache.release(key)
    target = manifest.parent / retired / manifest.name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        manifest.replace(target)
    except FileNotFoundError:  # another judge job sharing the cache retired it first
        pass


def _describe_result(result) -> str:
    if result.type == "errored":
        error = result.error.error
        return f"batch request errored ({error.type}): {error.message}"
    return f"batch request {result.type}"
