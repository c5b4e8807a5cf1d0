"""Self-speculative decoding from an early exit (the paper's Appendix I.1; LayerSkip's scheme).

One round per row: the first ``E`` layers draft tokens one at a time with their own KV cache and the
shared head at layer E (``Draft.layer``), up to ``Draft.tokens`` of them, or fewer when
``Draft.threshold`` stops the drafting: when no row's draft confidence reaches it; then layers E+1..N verify
every drafted position in one batched pass, starting from the layer-E states the draft computed
(so layers 1..E never run twice for a kept position, and their keys/values are reused). The final
head at each verified position gives the token final-layer greedy decoding would emit there; the
longest prefix of drafts equal to it is accepted, plus the final layer's own next token (the
correction, or a bonus after k accepted drafts). The output is final-layer greedy by construction.

A round is four steps of ``_Rounds``: ``draft``, ``verify``, then ``emit`` (the accepted tokens go
to the generations) and ``commit`` (the kept columns become the prefix of the next round).

Batches: rows accept different numbers of drafts. Every row's columns stay aligned: a row that
accepted fewer than the best row of the round leaves holes (columns marked not real, like left
padding: masked out as keys, skipped by the RoPE position count), so all rows start the next round
at the same column. Holes cost cache width and masked attention; batch size 1 has none. Per-row
state (draft limits, proposals, acceptances) is Python lists, as in the cached exit: at small
batches a tensor op per step costs more than a loop over the rows.

Layers run in fixed columns by the block runner the cached exit uses (``lite.decoders.slots``),
so the same ``Meter`` counts the cost; acceptance per prompt is ``Generation.acceptance``.

Adaptive drafting (``AdaptiveDraft``, after DEL, 2025): every round ``DraftChooser`` picks the
draft layer E and the number of drafts k that maximise the expected tokens per unit of cost,
from each candidate layer's acceptance rate seen so far in the batch (an exponentially decayed
count, starting from one accepted of two proposed). With per-draft acceptance a, a round yields
1 + a + ... + a^k tokens and costs k passes through E layers plus one verifying pass through the
other N - E (a block of k + 1 positions costs about one position's pass while decoding is bound by
reading the weights), plus k + 1 head applications weighed by the head's share of the weights,
plus a fixed cost per round (``AdaptiveDraft.round_cost``): without it the choice favours short
rounds, whose bookkeeping a small model pays more for than for its layers. Whatever is chosen,
the output is final-layer greedy.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch

from lite.decoders.blocks import PaddedBatch, device_of, embed, n_layers, row_index
from lite.decoders.generation import Acceptance, Collector, Generation
from lite.decoders.slots import Meter, SlotBatch
from lite.decoders.specs import AdaptiveDraft, Draft
from lite.flops import ModelShape


class _Rounds(SlotBatch):
    """The batch's columns across rounds: token ids besides the real flags and positions.

    ``done``: the first column no layer has seen; ``cur``: the column of the newest committed token.
    """

    def __init__(self, model, batch: PaddedBatch, draft: Draft, meter: Meter | None):
        size, prompt = batch.ids.shape
        width = prompt + 2 * (draft.tokens + 1)
        self.ids = batch.ids.new_zeros((size, width))  # (batch, width)
        self.ids[:, :prompt] = batch.ids
        real = batch.real.new_zeros((size, width))  # (batch, width)
        real[:, :prompt] = batch.real
        # padding, or several rows that may accept different numbers of drafts (holes): masks must
        # look at the keys; one row without padding never has a key that is not real
        padded = size > 1 or not bool(batch.real.all())
        super().__init__(model, real, self._positions(real), padded, meter)
        self.draft_settings = draft
        self.done, self.cur = 0, prompt - 1

    def _positions(self, real: torch.Tensor) -> torch.Tensor:
        return PaddedBatch(self.ids, real).position_ids()  # (batch, width): holes are not counted

    def _make_room(self) -> None:
        """Columns for a whole round: up to k drafts and the correction after ``cur``."""
        needed = self.cur + self.draft_settings.tokens + 2
        if needed <= self.ids.shape[1]:
            return
        width = 2 * needed
        extra = width - self.ids.shape[1]
        self.ids = torch.cat([self.ids, self.ids.new_zeros((self.size, extra))], dim=1)
        self.real = torch.cat([self.real, self.real.new_zeros((self.size, extra))], dim=1)
        self.positions = self._positions(self.real)
        self.cache.grow(width)

    def draft(self, rows: list[int], limit: list[int]) -> tuple[list[int], torch.Tensor]:
        """Layers 1..E on the new columns of ``rows``, then one draft token at a time per row while
        it may (``limit[i]`` drafts at most) and some row's draft confidence passes the threshold.

        Returns per row the drafts proposed and the layer-E states of columns ``done..cur+k``
        (rows, cur + k + 1 - done, hidden), the verification's input.
        """
        self._make_room()
        k, done, cur = self.draft_settings.tokens, self.done, self.cur
        proposed = [0] * len(rows)
        self.real[:, cur + 1 :] = False
        first_layer = None  # (rows, cur + k + 1 - done, hidden)
        drafting = list(range(len(rows)))  # indices into rows of those processing column cur + step
        step = 0
        while drafting:
            start, stop = (done if step == 0 else cur + step), cur + step + 1
            hidden = self._draft_layers([rows[i] for i in drafting], start, stop)  # (drafting, q, hidden)
            if first_layer is None:
                first_layer = hidden.new_zeros((len(rows), cur + k + 1 - done, hidden.shape[-1]))
            first_layer[row_index(drafting, len(rows), self.device), start - done : stop - done] = hidden
            allowed = [limit[i] > step for i in drafting]
            drafting = self._draft_tokens(rows, drafting, allowed, hidden, stop)
            for i in drafting:
                proposed[i] += 1
            step += 1
        return proposed, first_layer

    def _draft_layers(self, drafters: list[int], start: int, stop: int) -> torch.Tensor:
        """Layers 1..E on columns ``start..stop-1`` of batch rows ``drafters``: (drafters, q, hidden)."""
        pick = row_index(drafters, self.size, self.device)
        ids = self.ids[pick, start:stop]  # (drafters, q)
        return self.run(embed(self.model, ids), drafters, start, 1, self.draft_settings.layer, pick)

    def _draft_tokens(
        self, rows: list[int], drafting: list[int], allowed: list[bool], hidden: torch.Tensor, column: int
    ) -> list[int]:
        """The draft head on the last position of ``hidden`` (drafting, q, hidden) for the rows
        ``allowed`` another draft; if any one's draft confidence passes the threshold, each puts its token
        into ``column``. Returns those rows, as indices into ``rows``."""
        wants = [n for n, ok in enumerate(allowed) if ok]  # indices into drafting
        if not wants:
            return []
        head = self.head(
            hidden[row_index(wants, len(drafting), self.device)], [rows[drafting[n]] for n in wants]
        )
        tokens = head.tokens.tolist()  # (wants,)
        threshold = self.draft_settings.threshold
        # the rows draft on together while any of them is confident: a row that stopped alone
        # would leave a smaller block to gather in every later draft step, which costs more than
        # the draft it saves (measured at batch 4 and 16); alone, a row stops at its threshold
        if threshold is not None and not bool((head.confidence >= threshold).any()):
            return []
        chosen = [(drafting[n], token) for n, token in zip(wants, tokens, strict=True)]
        if chosen:
            self._propose([rows[i] for i, _ in chosen], column, [token for _, token in chosen])
        return [i for i, _ in chosen]

    def _propose(self, rows: list[int], column: int, tokens: list[int]) -> None:
        """Draft ``tokens`` (one per row of ``rows``) into ``column``."""
        where = row_index(rows, self.size, self.device)
        self.ids[where, column] = torch.tensor(tokens, device=self.device)
        self.real[where, column] = True
        # the draft continues its row's real tokens: one position further
        self.positions[where, column] = self.positions[where, column - 1] + 1

    def verify(
        self, rows: list[int], first_layer: torch.Tensor, proposed: list[int]
    ) -> tuple[list[list[int]], list[list[float]], list[int]]:
        """Layers E+1..N on columns ``done..cur+m`` of every row in one pass (m: the most drafts
        any row proposed), and the final head at columns ``cur..cur+m``.

        Returns per row the final layer's tokens and confidences for columns ``cur+1..cur+m+1``
        (rows, m + 1) each, and how many drafts it accepts: the longest prefix of its drafts equal
        to the final layer's tokens.
        """
        total, done, cur = n_layers(self.model), self.done, self.cur
        most = max(proposed)
        stop = cur + most + 1
        block = first_layer[:, : stop - done]  # (rows, q, hidden)
        final = self.run(block, rows, done, self.draft_settings.layer + 1, total)  # (rows, q, hidden)
        tail = final[:, cur - done :]  # (rows, m + 1, hidden): predictions for columns cur + 1 ..
        head = self.head(tail.reshape(-1, tail.shape[-1]), rows, most + 1)
        verified = head.tokens.view(len(rows), most + 1).tolist()  # (rows, m + 1)
        confidence = head.confidence.view(len(rows), most + 1).tolist()  # (rows, m + 1)
        drafts = self.ids[row_index(rows, self.size, self.device), cur + 1 : stop].tolist()  # (rows, m)
        accepted = []
        for i in range(len(rows)):
            count = 0
            while count < proposed[i] and drafts[i][count] == verified[i][count]:
                count += 1
            accepted.append(count)
        return verified, confidence, accepted

    def commit(self, rows: list[int], accepted: list[int], verified: list[list[int]]) -> None:
        """Keep columns ``cur..cur+a`` of each row (a: its accepted drafts), leave holes up to the
        common next column, and put each row's correction there: the next round starts from it."""
        best = max(accepted)
        nxt = self.cur + best + 1
        pick = row_index(rows, self.size, self.device)
        if min(accepted) < best:
            columns = torch.arange(self.cur + 1, self.ids.shape[1], device=self.device)  # (width - cur - 1,)
            last_kept = self.cur + torch.tensor(accepted, device=self.device)  # (rows,)
            self.real[pick, self.cur + 1 :] = columns[None, :] <= last_kept[:, None]
        corrections = [verified[i][accepted[i]] for i in range(len(rows))]
        self.ids[pick, nxt] = torch.tensor(corrections, device=self.device)
        self.real[pick, nxt] = True
        self.positions = self._positions(self.real)
        self.done = self.cur = nxt


class DraftChooser:
    """The draft of each round of ``AdaptiveDraft`` decoding (see the module docstring)."""

    DECAY = 0.8  # weight of the acceptance seen before each round: recent rounds count most

    def __init__(self, adaptive: AdaptiveDraft, total: int, head_cost: float):
        self.adaptive, self.total, self.head_cost = adaptive, total, head_cost
        self.proposed = dict.fromkeys(adaptive.layers, 2.0)  # the prior: one of two accepted
        self.accepted = dict.fromkeys(adaptive.layers, 1.0)

    def rate(self, layer: int) -> float:
        return self.accepted[layer] / self.proposed[layer]

    def value(self, layer: int, tokens: int) -> float:
        """Expected tokens per unit of cost of ``tokens`` drafts from ``layer``."""
        rate = self.rate(layer)
        gained = sum(rate**i for i in range(tokens + 1))
        heads = (tokens + 1) * self.head_cost
        cost = tokens * layer + (self.total - layer) + heads + self.adaptive.round_cost
        return gained / cost

    def next(self) -> Draft:
        options = [(e, k) for e in self.adaptive.layers for k in range(1, self.adaptive.tokens + 1)]
        layer, tokens = max(options, key=lambda option: self.value(*option))
        return self.adaptive.at(layer, tokens)

    def update(self, layer: int, proposed: int, accepted: int) -> None:
        # a round whose first draft no row was confident of counts as one rejected draft: a layer
        # whose threshold its drafts never reach is left for another
        self.proposed[layer] = self.DECAY * self.proposed[layer] + max(proposed, 1)
        self.accepted[layer] = self.DECAY * self.accepted[layer] + accepted


def head_share(model) -> float:
    """The LM head's weights relative to one decoder layer's: its cost in layer passes."""
    shape = ModelShape.from_config(model.config)
    return shape.vocab * shape.hidden / shape.layer_weights


def _emit(
    out: Collector,
    rows: list[int],
    proposed: list[int],
    accepted: list[int],
    verified: list[list[int]],
    confidence: list[list[float]],
    layer: int,
) -> None:
    """Each row's accepted drafts, then the final layer's own token, until the row stops."""
    for i, row in enumerate(rows):
        stats = out.rows[row].acceptance
        stats.proposed += proposed[i]
        stats.accepted += accepted[i]
        stats.rounds += 1
        for t in range(accepted[i] + 1):
            out.append(row, verified[i][t], layer, confidence[i][t], 1)
            if not out.live[row]:
                break


@torch.inference_mode()
def speculative(
    model,
    prompts: Sequence[list[int]],
    draft: Draft | AdaptiveDraft,
    *,
    max_new_tokens: int,
    eos_ids: Collection[int],
    pad_id: int,
    meter: Meter | None = None,
) -> list[Generation]:
    """Greedy decoding, final-layer tokens, drafted by layer ``draft.layer`` (or by the layer an
    ``AdaptiveDraft`` picks each round) and verified in one pass.

    Returns per prompt the ``Generation``: exit layer N for every token, the final layer's
    confidence, and the drafting statistics in ``acceptance``. ``meter`` (optional) is filled with
    the work done.
    """
    total = n_layers(model)
    deepest = max(draft.layers) if isinstance(draft, AdaptiveDraft) else draft.layer
    if not deepest < total:
        raise ValueError(f"draft layer {deepest} must be below the final layer {total}")
    chooser = DraftChooser(draft, total, head_share(model)) if isinstance(draft, AdaptiveDraft) else None
    out = Collector(len(prompts), max_new_tokens, eos_ids, trace=False)
    for generation in out.rows:
        generation.acceptance = Acceptance()
    first = draft if chooser is None else draft.at(draft.layers[0], draft.tokens)  # room for the most drafts
    rounds = _Rounds(model, PaddedBatch.from_lists(list(prompts), pad_id, device_of(model)), first, meter)
    while True:
        rows = [row for row in range(len(prompts)) if out.live[row]]
        if chooser is not None:  # every committed column has all N layers: any layer may draft next
            rounds.draft_settings = chooser.next()
        tokens = rounds.draft_settings.tokens
        # per row of ``rows``: drafts allowed, so that a round never overshoots max_new_tokens
        limit = [min(tokens, max_new_tokens - len(out.rows[row].token_ids) - 1) for row in rows]
        proposed, first_layer = rounds.draft(rows, limit)
        verified, confidence, accepted = rounds.verify(rows, first_layer, proposed)
        if chooser is not None:
            chooser.update(rounds.draft_settings.layer, sum(proposed), sum(accepted))
        _emit(out, rows, proposed, accepted, verified, confidence, total)
        if out.finished:
            return out.rows
        rounds.commit(rows, accepted, verified)
