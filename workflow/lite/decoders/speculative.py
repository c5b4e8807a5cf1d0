"""Self-speculative decoding from an early exit (the paper's Appendix I.1; LayerSkip's scheme).

One round per row: the first ``E`` layers draft tokens one at a time with their own KV cache and the
shared head at layer E (``Draft.layer``), up to ``Draft.tokens`` of them, or fewer when
``Draft.threshold`` stops a row whose draft confidence falls below it; then layers E+1..N verify
every drafted position in one batched pass, starting from the layer-E states the draft computed
(so layers 1..E never run twice for a kept position, and their keys/values are reused). The final
head at each verified position gives the token final-layer greedy decoding would emit there; the
longest prefix of drafts equal to it is accepted, plus the final layer's own next token (the
correction, or a bonus after k accepted drafts). The output is final-layer greedy by construction.

Batches: rows accept different numbers of drafts. Every row's columns stay aligned: a row that
accepted fewer than the best row of the round leaves holes (columns marked not real, like left
padding: masked out as keys, skipped by the RoPE position count), so all rows start the next round
at the same column. Holes cost cache width and masked attention; batch size 1 has none. Per-row
state (draft limits, proposals, acceptances) is Python lists, as in the cached exit: at small
batches a tensor op per step costs more than a loop over the rows.

Cost is counted by the same ``Meter`` as the cached exit (``lite.decoders.cached``); acceptance per
prompt in ``Acceptance``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch

from lite.decoders.blocks import (
    PaddedBatch,
    RotaryTable,
    device_of,
    embed,
    exit_head,
    make_span,
    n_layers,
    row_index,
    run_layers,
)
from lite.decoders.cached import Meter, SlotCache
from lite.decoders.engines import Generation


@dataclass(frozen=True)
class Draft:
    """How drafts are made: from which layer, how many per round, when to stop early."""

    layer: int  # E: the draft exit layer, 1 <= E < N
    tokens: int = 4  # k: most drafts per verification round (LayerSkip used 4-12)
    threshold: float | None = None  # stop a row's drafting when its draft confidence < this

    def __post_init__(self) -> None:
        if isinstance(self.layer, bool) or not isinstance(self.layer, int) or self.layer < 1:
            raise ValueError(f"Draft.layer must be a layer >= 1, got {self.layer!r}")
        if isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or self.tokens < 1:
            raise ValueError(f"Draft.tokens must be >= 1, got {self.tokens!r}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"Draft.threshold must be in [0, 1] or None, got {self.threshold!r}")


@dataclass
class Acceptance:
    """Drafting statistics of one prompt."""

    proposed: int = 0  # draft tokens sent to verification
    accepted: int = 0  # of those, equal to the final layer's token
    rounds: int = 0  # verification passes

    @property
    def rate(self) -> float:
        """Share of proposed drafts accepted (nan when nothing was proposed)."""
        return self.accepted / self.proposed if self.proposed else float("nan")


class _Columns:
    """Token ids, real-token flags and RoPE positions per column, growing on demand."""

    def __init__(self, model, batch: PaddedBatch, width: int):
        self.rotary = RotaryTable(model)
        self.device = device = batch.ids.device
        size, prompt = batch.ids.shape
        self.ids = torch.zeros((size, width), dtype=torch.long, device=device)  # (batch, width)
        self.ids[:, :prompt] = batch.ids
        self.real = torch.zeros((size, width), dtype=torch.bool, device=device)  # (batch, width)
        self.real[:, :prompt] = batch.real
        self.positions = self._positions()
        self.size = size
        # padding, or several rows that may accept different numbers of drafts (holes): masks must
        # look at the keys; one row without padding never has a key that is not real
        self.padded = size > 1 or not bool(batch.real.all())

    def _positions(self) -> torch.Tensor:
        return PaddedBatch(self.ids, self.real).position_ids()  # (batch, width): holes are not counted

    def grow(self, width: int) -> None:
        extra = width - self.ids.shape[1]
        if extra > 0:
            self.ids = torch.cat([self.ids, self.ids.new_zeros((self.ids.shape[0], extra))], dim=1)
            self.real = torch.cat([self.real, self.real.new_zeros((self.real.shape[0], extra))], dim=1)
            self.positions = self._positions()

    def renumber(self) -> None:
        self.positions = self._positions()


def _run(model, cols: _Columns, cache: SlotCache, hidden, rows: list[int], start, first, last, meter):
    """Layers ``first..last`` on the block of columns ``start..`` of batch ``rows``; returns its output."""
    stop = start + hidden.shape[1]
    pick = row_index(rows, cols.size, cols.device)
    real, positions = cols.real[pick, :stop], cols.positions[pick, start:stop]
    span = make_span(model, hidden, real, positions, cols.rotary, padded=None if cols.padded else False)
    out = run_layers(
        model, hidden, first, last, span, cache.target(None if isinstance(pick, slice) else pick, start)
    )
    if meter is not None:
        meter.layers(rows, start, stop, first, last, cols.real, cols.positions)
    return out


@torch.inference_mode()
def speculative(
    model,
    prompts: Sequence[list[int]],
    draft: Draft,
    *,
    max_new_tokens: int,
    eos_ids: Collection[int],
    pad_id: int,
    meter: Meter | None = None,
) -> tuple[list[Generation], list[Acceptance]]:
    """Greedy decoding, final-layer tokens, drafted by layer ``draft.layer`` and verified in one pass.

    Returns per prompt the ``Generation`` (exit layer N for every token, the final layer's
    confidence) and its ``Acceptance``. ``meter`` (optional) is filled with the work done.
    """
    total = n_layers(model)
    if not draft.layer < total:
        raise ValueError(f"draft layer {draft.layer} must be below the final layer {total}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    eos_ids = frozenset(eos_ids)
    device = device_of(model)
    batch = PaddedBatch.from_lists(list(prompts), pad_id, device)
    size, prompt = batch.ids.shape
    width = prompt + 2 * (draft.tokens + 1)
    cols = _Columns(model, batch, width)
    cache = SlotCache(model, size, width)
    rows_out = [Generation() for _ in range(size)]
    stats = [Acceptance() for _ in range(size)]
    live = [True] * size
    done, cur = 0, prompt - 1  # first column no layer has seen; column of the newest committed token
    k = draft.tokens
    while True:
        if cur + k + 2 > cols.ids.shape[1]:
            grown = 2 * (cur + k + 2)
            cols.grow(grown)
            cache.grow(grown)
        rows = [row for row in range(size) if live[row]]
        # per row of ``rows``: drafts allowed (a round must not overshoot max_new_tokens), drafts made
        limit = [min(k, max_new_tokens - len(rows_out[row].token_ids) - 1) for row in rows]
        proposed = [0] * len(rows)
        cols.real[:, cur + 1 :] = False
        first_layer = None  # (rows, q, hidden): layer-E states of columns done..cur+K for verification
        drafting = list(range(len(rows)))  # indices into rows of those processing column cur + step
        step = 0
        while drafting:
            start = done if step == 0 else cur + step
            drafters = [rows[i] for i in drafting]
            ids = cols.ids[row_index(drafters, cols.size, device), start : cur + step + 1]  # (drafters, q)
            hidden = _run(model, cols, cache, embed(model, ids), drafters, start, 1, draft.layer, meter)
            if first_layer is None:
                first_layer = hidden.new_zeros((len(rows), cur + k + 1 - done, hidden.shape[-1]))
            into = row_index(drafting, len(rows), device)
            first_layer[into, start - done : cur + step + 1 - done] = hidden
            wants = [n for n, i in enumerate(drafting) if limit[i] > step]  # may still propose a draft
            takers = []
            if wants:
                if meter is not None:
                    meter.heads([drafters[n] for n in wants])
                head = exit_head(model, hidden[row_index(wants, len(drafting), device)])
                tokens = head.tokens.tolist()
                keep = (
                    [True] * len(wants)
                    if draft.threshold is None
                    else (head.confidence >= draft.threshold).tolist()
                )
                chosen = [
                    (drafting[n], token) for n, token, kept in zip(wants, tokens, keep, strict=True) if kept
                ]
                if chosen:
                    takers = [i for i, _ in chosen]
                    column = cur + step + 1
                    where = row_index([rows[i] for i in takers], cols.size, device)
                    cols.ids[where, column] = torch.tensor([token for _, token in chosen], device=device)
                    cols.real[where, column] = True
                    # the draft continues its row's real tokens: one position further
                    cols.positions[where, column] = cols.positions[where, column - 1] + 1
                    for i in takers:
                        proposed[i] += 1
            drafting = takers
            step += 1

        # Verification: layers E+1..N on columns done..cur+K of every row, one pass.
        most = max(proposed)
        stop = cur + most + 1
        block = first_layer[:, : stop - done]  # (rows, q, hidden)
        final = _run(model, cols, cache, block, rows, done, draft.layer + 1, total, meter)
        if meter is not None:
            meter.heads(rows, most + 1)
        tail = final[:, cur - done :]  # (rows, K + 1, hidden): predictions for columns cur + 1 ..
        head = exit_head(model, tail.reshape(-1, tail.shape[-1]))
        verified = head.tokens.view(len(rows), most + 1).tolist()  # (rows, K + 1)
        confidence = head.confidence.view(len(rows), most + 1).tolist()  # (rows, K + 1)
        drafts = cols.ids[row_index(rows, cols.size, device), cur + 1 : stop].tolist()  # (rows, K)
        accepted = []  # per row: the longest prefix of its drafts that the final layer agrees with
        for i in range(len(rows)):
            count = 0
            while count < proposed[i] and drafts[i][count] == verified[i][count]:
                count += 1
            accepted.append(count)

        for i, row in enumerate(rows):
            gen, stat = rows_out[row], stats[row]
            stat.proposed += proposed[i]
            stat.accepted += accepted[i]
            stat.rounds += 1
            for t in range(accepted[i] + 1):  # the accepted drafts, then the final layer's own
                token = verified[i][t]
                gen.token_ids.append(token)
                gen.exit_layers.append(total)
                gen.confidences.append(confidence[i][t])
                gen.heads.append(1)
                if token in eos_ids or len(gen.token_ids) >= max_new_tokens:
                    live[row] = False
                    break
        if not any(live):
            return rows_out, stats

        # Commit: kept columns cur..cur+a per row, holes up to the common next column.
        best = max(accepted)
        nxt = cur + best + 1
        pick = row_index(rows, cols.size, device)
        if min(accepted) < best:
            columns = torch.arange(cur + 1, cols.ids.shape[1], device=device)  # (width - cur - 1,)
            last_kept = cur + torch.tensor(accepted, device=device)  # (rows,)
            cols.real[pick, cur + 1 :] = columns[None, :] <= last_kept[:, None]
        corrections = [verified[i][accepted[i]] for i in range(len(rows))]
        cols.ids[pick, nxt] = torch.tensor(corrections, device=device)
        cols.real[pick, nxt] = True
        cols.renumber()
        done = cur = nxt
