"""Dynamic early exit with a KV cache and exact catch-up: the paper's tokens, at cached-decoding cost.

``exit_cached`` takes the arguments of ``lite.decoders.engines.exit_nocache`` and returns the same
``Generation`` records (tokens, exit layers, confidences, heads); only the work differs. The
no-cache reference recomputes the whole prefix for every token. Here each (position, layer) state
is computed once and kept:

- ``SlotCache``: keys/values of every layer in a fixed column per position of the left-padded
  batch. ``DynamicCache`` appends one block per layer for all rows at once, so every row would need
  the same cache length in every layer; with per-row exits the rows' depths differ, hence columns.
- per position, the hidden state of the deepest layer computed so far (``depth``, ``store``).

Per token the checkpoints are visited in ascending order as in the reference. Going up to layer b,
layer l runs on a block made of the new position plus every earlier position whose deepest state is
below l (positions skipped because their tokens exited early); they are caught up in the same
batched pass, with an explicit mask (transformers 5.24's sdpa crops the keys of a multi-token
block against a cache when the mask is None). Depth never increases along a
row (a position is caught up before any later one goes deeper), so the block of layer l is a
suffix of the row and its start is the count of columns already at depth >= l. Consecutive layers
whose blocks are the same run as one ``run_layers`` call. Rows that need the same block share a
call; a row never computes a position twice.

``Meter`` counts the work as it is done: kernel FLOPs (attention over the full query x key
rectangle, padding included) and, per row, the causal FLOPs of ``lite.flops.kvcache_flops``, which
they equal exactly for this decoder; plus how often each (row, column, layer) state was computed.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

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
from lite.decoders.engines import Collector, Generation
from lite.decoders.policies import ExitPolicy
from lite.flops import ModelShape, head_flops, layer_flops


class SlotCache:
    """Per-layer keys/values in fixed columns; the duck-typed cache HF attention layers call.

    Before each ``run_layers`` call, ``target(rows, start)`` says which batch rows the block holds
    and at which column it starts; the attention's ``update`` writes the block's keys/values there
    and returns those rows' columns ``0..start+q-1`` (the caller's mask covers exactly these).
    Columns never written hold zeros (finite, so masked scores stay finite).
    """

    def __init__(self, model, batch: int, width: int):
        config = model.config
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        weight = model.model.embed_tokens.weight
        self._shape = (batch, kv_heads, head_dim)
        self._like = {"dtype": weight.dtype, "device": weight.device}
        self.keys = [self._zeros(width) for _ in range(n_layers(model))]  # each (batch, kv_heads, width, d)
        self.values = [self._zeros(width) for _ in range(n_layers(model))]
        self._rows: torch.Tensor | None = None
        self._start = 0

    def _zeros(self, width: int) -> torch.Tensor:
        batch, kv_heads, head_dim = self._shape
        return torch.zeros((batch, kv_heads, width, head_dim), **self._like)

    @property
    def width(self) -> int:
        return self.keys[0].shape[2]

    def grow(self, width: int) -> None:
        """Make room for ``width`` columns (keeps what is stored)."""
        if width <= self.width:
            return
        for store in (self.keys, self.values):
            for i, old in enumerate(store):
                new = self._zeros(width)
                new[:, :, : old.shape[2]] = old
                store[i] = new

    def target(self, rows: torch.Tensor | None, start: int) -> SlotCache:
        """Aim the next block at batch ``rows`` (None: all, in order) from column ``start``."""
        self._rows, self._start = rows, start
        return self

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        # keys, values: (rows, kv_heads, q, head_dim) of the block, already rotated
        end = self._start + keys.shape[2]
        k, v = self.keys[layer_idx], self.values[layer_idx]
        if self._rows is None:
            k[:, :, self._start : end] = keys
            v[:, :, self._start : end] = values
            return k[:, :, :end], v[:, :, :end]  # views: no copy of the cache
        k[self._rows, :, self._start : end] = keys
        v[self._rows, :, self._start : end] = values
        return k[self._rows, :, :end], v[self._rows, :, :end]


class Meter:
    """Work a decoder really does, counted block by block (matmul FLOPs as in ``lite.flops``).

    The counts live on the CPU whatever device the decoder runs on: they are bookkeeping, read
    after decoding, and a metered run is never a timed one (``lite.bench``).
    """

    def __init__(self, shape: ModelShape, batch: int):
        self.shape = shape
        self.layer_kernel = 0  # decoder layers, attention over the whole (queries x keys) rectangle
        self.head_kernel = 0  # norm + LM head applications
        self.causal = torch.zeros(batch, dtype=torch.long, device="cpu")  # (batch,) kvcache accounting
        self.computed = torch.zeros(
            (batch, 0, shape.layers), dtype=torch.int32, device="cpu"
        )  # (batch, column, layer)
        self.calls = 0  # run_layers calls

    @property
    def kernel(self) -> int:
        """Every matmul FLOP the kernels executed, padding and masked keys included."""
        return self.layer_kernel + self.head_kernel

    def layers(
        self,
        rows: list[int],
        start: int,
        end: int,
        first: int,
        last: int,
        real: torch.Tensor,
        positions: torch.Tensor,
    ) -> None:
        """Layers ``first..last`` ran on columns ``start..end-1`` of ``rows`` against keys ``0..end-1``."""
        count, queries = last - first + 1, end - start
        self.calls += 1
        self.layer_kernel += len(rows) * count * layer_flops(self.shape, queries, end)
        shape = self.shape
        per_key = 4 * shape.heads * shape.head_dim
        rows = torch.tensor(rows, device="cpu")  # (rows,)
        is_real = real[:, start:end].cpu()[rows].long()  # (rows, q)
        # a real query at position p attends causally to p + 1 keys (its own included)
        keys = positions[:, start:end].cpu()[rows] + 1  # (rows, q)
        per_position = (2 * shape.layer_weights + per_key * keys) * is_real
        self.causal.index_add_(0, rows, per_position.sum(dim=1) * count)
        if self.computed.shape[1] < end:
            grown = torch.zeros((self.computed.shape[0], end, shape.layers), dtype=torch.int32, device="cpu")
            grown[:, : self.computed.shape[1]] = self.computed
            self.computed = grown
        self.computed[rows, start:end, first - 1 : last] += is_real[:, :, None].int()

    def heads(self, rows: list[int], positions: int = 1) -> None:
        """The head ran on ``positions`` positions of each of ``rows``."""
        flops = head_flops(self.shape, positions)
        self.head_kernel += len(rows) * flops
        self.causal[rows] += flops  # rows never repeat within a call


class _ExitState:
    """Columns of a left-padded batch with, per (row, column), the deepest state computed so far.

    Rows are Python lists of batch indices: the per-token bookkeeping of a decode step is a handful
    of Python operations per row instead of a few dozen tensor ops, which at batch 1 cost as much
    as a layer.
    """

    def __init__(self, model, batch: PaddedBatch, width: int, meter: Meter | None):
        self.model = model
        self.meter = meter
        self.device = device = device_of(model)
        size, prompt = batch.ids.shape
        self.size, self.total = size, n_layers(model)
        # every generated column is real: a row that has finished never computes (or shows) it
        self.real = torch.ones((size, width), dtype=torch.bool, device=device)  # (batch, width)
        self.real[:, :prompt] = batch.real
        self.padded = not bool(batch.real.all())
        self.positions = torch.zeros((size, width), dtype=torch.long, device=device)  # (batch, width)
        self.positions[:, :prompt] = batch.position_ids()
        self.positions[:, prompt:] = self.positions[:, prompt - 1 : prompt] + torch.arange(
            1, width - prompt + 1, device=device
        )
        # depth 0 = the embedding; padding counts as fully computed, so no block ever includes it
        self.depth = torch.zeros((size, width), dtype=torch.long, device=device)  # (batch, width)
        self.depth[:, :prompt].masked_fill_(~batch.real, self.total)
        # per row, the depth of column cur - 1: since depth never increases along a row, the
        # shallowest of the earlier columns (N when there is none), so no catch-up is due below it
        lengths = batch.real.sum(dim=1).tolist()
        self.behind = [0 if length > 1 else self.total for length in lengths]
        first = embed(model, batch.ids)  # (batch, prompt, hidden)
        self.store = first.new_zeros((size, width, first.shape[-1]))  # (batch, width, hidden)
        self.store[:, :prompt] = first
        self.cache = SlotCache(model, size, width)
        self.rotary = RotaryTable(model)
        self.cur = prompt - 1  # column of the newest input token (every row has one there)

    def advance(self, rows: list[int], first: int, last: int) -> None:
        """Bring column ``cur`` of ``rows`` from layer ``first - 1`` to ``last``, catching up as needed."""
        if not rows or first > last:
            return
        behind = min(self.behind[row] for row in rows)
        for row in rows:
            self.behind[row] = max(self.behind[row], last)
        if behind >= last:  # the usual case: nothing is behind
            self._run(rows, self.cur, first, last)
            return
        index = torch.tensor(rows, device=self.device)
        depth = self.depth[index, : self.cur + 1]  # (rows, cur + 1)
        # starts[i] (rows,): first column whose state is below layer first + i (all later ones are too)
        starts = torch.stack([(depth >= layer).sum(dim=1) for layer in range(first, last + 1)])
        layer = first
        while layer <= last:
            start = starts[layer - first]  # (rows,)
            end = layer
            while end < last and torch.equal(starts[end + 1 - first], start):
                end += 1
            for column in start.unique().tolist():
                self._run(index[start == column].tolist(), column, layer, end)
            layer = end + 1

    def _run(self, rows: list[int], start: int, first: int, last: int) -> None:
        stop = self.cur + 1
        pick = row_index(rows, self.size, self.device)
        hidden = self.store[pick, start:stop]  # (rows, q, hidden): every column is at layer first - 1
        positions = self.positions[pick, start:stop]
        real = self.real[pick, :stop]
        span = make_span(
            self.model, hidden, real, positions, self.rotary, padded=None if self.padded else False
        )
        cache = self.cache.target(None if isinstance(pick, slice) else pick, start)
        self.store[pick, start:stop] = run_layers(self.model, hidden, first, last, span, cache)
        self.depth[pick, start:stop] = last
        if self.meter is not None:
            self.meter.layers(rows, start, stop, first, last, self.real, self.positions)

    def head(self, rows: list[int]):
        """The shared head on column ``cur`` of ``rows`` (their current depth)."""
        if self.meter is not None:
            self.meter.heads(rows)
        return exit_head(self.model, self.store[row_index(rows, self.size, self.device), self.cur])

    def append(self, tokens: list[int], layers: list[int], live: list[bool]) -> None:
        """A new input column holding ``tokens`` (per row), which exited at ``layers``: the depth
        column ``cur`` reached. Finished rows never compute the new column."""
        column = self.cur + 1
        # finished rows get an embedding too, but no block and no head ever reads it
        self.store[:, column] = embed(self.model, torch.tensor(tokens, device=self.device)[:, None])[:, 0]
        for row in range(self.size):
            if live[row]:
                self.behind[row] = layers[row]
        self.cur = column


@torch.inference_mode()
def exit_cached(
    model,
    prompts: Sequence[list[int]],
    checkpoints: Sequence[int],
    policy: ExitPolicy,
    *,
    max_new_tokens: int,
    eos_ids: Collection[int],
    pad_id: int,
    meter: Meter | None = None,
) -> list[Generation]:
    """Early-exit greedy decoding with a KV cache and exact catch-up; same tokens as ``exit_nocache``.

    ``checkpoints`` ascend and end with the final layer N. A row's head is read at every visited
    checkpoint when the policy uses confidences, else only where the row exits (as the reference
    counts it). ``meter``, if given (``Meter(ModelShape.from_config(model.config), len(prompts))``),
    is filled with the work done.
    """
    total = n_layers(model)
    checkpoints = list(checkpoints)
    if not checkpoints or checkpoints[-1] != total or checkpoints != sorted(set(checkpoints)):
        raise ValueError(f"checkpoints must ascend and end with the final layer {total}, got {checkpoints}")
    batch = PaddedBatch.from_lists(list(prompts), pad_id, device_of(model))
    size = len(prompts)
    state = _ExitState(model, batch, batch.ids.shape[1] + max_new_tokens, meter)
    out = Collector(size, max_new_tokens, eos_ids, trace=False)
    step = 0
    while True:
        tokens, layers, confidence = [0] * size, [0] * size, [0.0] * size
        visited = [0] * size  # heads read while undecided
        undecided = [row for row in range(size) if out.live[row]]
        previous = 0
        for index, layer in enumerate(checkpoints):
            state.advance(undecided, previous + 1, layer)
            previous = layer
            for row in undecided:
                visited[row] += 1
            read, readers = None, undecided
            if policy.uses_confidence or layer == total:
                read = state.head(undecided)
            if layer == total:
                leave = undecided
            else:
                if read is None:  # unused by policies that ignore confidence
                    scores = torch.zeros(size, device=state.device)
                elif len(undecided) == size:
                    scores = read.confidence
                else:
                    scores = torch.zeros(size, device=state.device).index_copy_(
                        0, torch.tensor(undecided, device=state.device), read.confidence
                    )
                exits = policy.exits(step, index, scores).tolist()  # (batch,)
                leave = [row for row in undecided if exits[row]]
            if read is None and leave:  # only the rows that exit need this head
                read, readers = state.head(leave), leave
            if leave:
                at = {row: i for i, row in enumerate(readers)}
                head_tokens, head_confidence = read.tokens.tolist(), read.confidence.tolist()
                for row in leave:
                    tokens[row], layers[row] = head_tokens[at[row]], layer
                    confidence[row] = head_confidence[at[row]]
                gone = set(leave)
                undecided = [row for row in undecided if row not in gone]
            if not undecided:
                break
        heads = visited if policy.uses_confidence else [1] * size
        out.add(tokens, layers, confidence, heads)
        if out.finished:
            return out.rows
        state.append(tokens, layers, out.live)
        step += 1
