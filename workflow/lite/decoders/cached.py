"""Dynamic early exit with a KV cache and exact catch-up: the paper's tokens, at cached-decoding cost.

``exit_cached`` takes the arguments of ``lite.decoders.engines.exit_nocache`` and returns the same
``Generation`` records (tokens, exit layers, confidences, heads); only the work differs. The
no-cache reference recomputes the whole prefix for every token. Here each (position, layer) state
is computed once and kept, in fixed columns (``lite.decoders.slots``): keys/values in a
``SlotCache`` and, per position, the hidden state of the deepest layer computed so far (``depth``,
``store``).

Per token the checkpoints are visited in ascending order as in the reference. Going up to layer b,
layer l runs on a block made of the new position plus every earlier position whose deepest state is
below l (positions skipped because their tokens exited early); they are caught up in the same
batched pass, with an explicit mask (transformers 5.24's sdpa crops the keys of a multi-token
block against a cache when the mask is None). Depth never increases along a row (a position is
caught up before any later one goes deeper), so the positions a row needs at layer l are a suffix
of the row. One block serves every row and layer of a checkpoint interval: it starts at the
earliest column any row needs, and a column is frozen at the layers it has already been through
(``SlotBatch.run``: its state passes on unchanged, its cached keys/values are kept), so no state
is ever computed twice.

Batches: the live rows of a step ride along with the deepest row still undecided, to the layer
where the last of them exits, although some exited earlier; their heads are not read again. A
step then costs the block of its deepest row, once, instead of a smaller block per group of rows
(a gather of their columns and caches in every layer, and later catch-up passes of the rows that
left early). Measured on a CPU at batch 16 (12-layer model, 64 tokens), riding along ran 1.2-1.5x
faster than computing only the undecided rows, on the tuned model and on its 4x-wide copy; the
extra states are exact (the same inputs as their catch-up would have), so tokens and exits are
those of the no-cache reference whatever the batch. Alone (batch 1) a row computes exactly what
its exits need. With ``fill="copy"`` an exited row is never caught up, so riding along would buy
nothing: only the undecided rows go on (their caches gathered with ``index_select``).

A ``Meter`` (``lite.decoders.slots``) counts the work; at batch 1 its causal FLOPs equal
``lite.flops.kvcache_flops`` exactly, in a batch they exceed it by the states ridden along.

Two options beyond the paper, for a KV cache that should save compute, not only time: with exact
catch-up every position is eventually computed through nearly every layer, and every visited
checkpoint reads the head, so an exit saves little of a cached decode's FLOPs.

- An exit gate (``lite.decoders.gates``) decides from the hidden state at O(hidden) whether a
  checkpoint's head is read at all.
- ``fill="copy"`` (CALM's state propagation): when a token exits at layer e, the keys/values of
  layers e+1..N at its input position are projected from layer e's state (``_Propagation``) and
  the position counts as computed through N, so no later token catches it up. The prompt's other
  positions are still caught up exactly, as deep as the response goes. Depth is then no longer
  monotone along a row (deep generated columns after a shallow prompt); the block of a catch-up
  starts at the first column below the layer and freezes the deep ones. Tokens differ from the
  exact decoder's (later tokens attend to projected states), so the quality cost is measured by
  judging, never assumed; they do not depend on the batch: a row's copied columns overwrite
  whatever riding along computed there.
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Sequence

import torch

from lite.architectures import adapter
from lite.decoders.blocks import (
    HeadOutput,
    PaddedBatch,
    Span,
    _parts,
    _rms_norm,
    device_of,
    embed,
    n_layers,
    row_index,
)
from lite.decoders.engines import exit_points
from lite.decoders.gates import ExitGate
from lite.decoders.generation import Collector, Generation
from lite.decoders.policies import ExitPolicy
from lite.decoders.slots import Meter, SlotBatch
from lite.flops import FILL_KINDS

# model -> (the stamp of the weights it was stacked from, its _Propagation)
_PROPAGATIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Propagation:
    """CALM's state propagation: the keys/values a skipped layer would have made, projected from
    the exit layer's hidden state (each layer's input norm, k and v projections and RoPE on it).

    The input norms' weights and the k/v projections of all layers are stacked once per model
    (``for_model``), so the layers above an exit are filled by one batched matmul per step and
    exit layer.
    """

    @classmethod
    def for_model(cls, model) -> _Propagation:
        """The model's propagation, stacked on its first use and again only when a weight it reads
        changed (in place, or moved to another device or dtype): decoding calls this per batch."""
        if not adapter(model).written_out:
            return cls(model)  # which says why it cannot
        stamp = tuple(
            (w.data_ptr(), w._version)
            for p in map(_parts, model.model.layers)
            for w in (p.input_norm[0], p.k[0], p.v[0])
        )
        cached = _PROPAGATIONS.get(model)
        if cached is None or cached[0] != stamp:
            cached = _PROPAGATIONS[model] = (stamp, cls(model))
        return cached[1]

    def __init__(self, model):
        found = adapter(model)
        if not found.written_out:  # q/k norms (Qwen3) or other norms (Gemma): not LLaMA's projections
            raise ValueError(
                f"kv_fill copy projects keys/values as LLaMA layers do; {model.config.model_type!r} "
                "layers compute them otherwise"
            )
        parts = [_parts(layer) for layer in model.model.layers]
        self.eps = parts[0].input_norm[1]
        if any(p.input_norm[1] != self.eps for p in parts):
            raise ValueError("kv_fill copy needs one RMSNorm epsilon across layers")
        self.head_dim = parts[0].head_dim
        self.norms = torch.stack([p.input_norm[0] for p in parts])[:, None]  # (N, 1, h)
        # (N, h, 2 * kv_width): keys then values, as F.linear's weights transposed
        self.weights = torch.stack([torch.cat([p.k[0], p.v[0]]).T for p in parts])
        biases = [p.k[1] is not None for p in parts]
        self.biases = (
            torch.stack([torch.cat([p.k[1], p.v[1]]) for p in parts])[:, None] if all(biases) else None
        )  # (N, 1, 2 * kv_width) or None

    def project(
        self, hidden: torch.Tensor, first: int, rope: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of layers ``first+1..N`` from ``hidden`` (rows, h), the raw output of layer
        ``first``; ``rope`` (cos, signed sin), each (rows, 1, 1, d). Returns each
        (N - first, rows, kv_heads, d)."""
        # each layer's input norm: one RMS of the state, scaled by every layer's weight
        x = _rms_norm(hidden[None], self.norms[first:], self.eps)  # (N - first, rows, h)
        kv = torch.bmm(x, self.weights[first:])  # (N - first, rows, 2 * kv_width)
        if self.biases is not None:
            kv = kv + self.biases[first:]
        layers, rows, _ = kv.shape
        kv = kv.view(layers, rows, 2, -1, self.head_dim)  # (N - first, rows, 2, kv_heads, d)
        keys, values = kv[:, :, 0], kv[:, :, 1]
        cos, sin = rope[0][:, 0], rope[1][:, 0]  # (rows, 1, d): broadcast over layers and heads
        keys = keys * cos + keys.roll(self.head_dim // 2, -1) * sin
        return keys, values


class _ExitState(SlotBatch):
    """Columns of a left-padded batch with, per (row, column), the deepest state computed so far.

    Rows are Python lists of batch indices: the per-token bookkeeping of a decode step is a handful
    of Python operations per row instead of a few dozen tensor ops, which at batch 1 cost as much
    as a layer.
    """

    def __init__(self, model, batch: PaddedBatch, width: int, meter: Meter | None):
        device = device_of(model)
        size, prompt = batch.ids.shape
        # every generated column is real: a row that has finished never computes (or shows) it
        real = torch.ones((size, width), dtype=torch.bool, device=device)  # (batch, width)
        real[:, :prompt] = batch.real
        positions = torch.zeros((size, width), dtype=torch.long, device=device)  # (batch, width)
        positions[:, :prompt] = batch.position_ids()
        positions[:, prompt:] = positions[:, prompt - 1 : prompt] + torch.arange(
            1, width - prompt + 1, device=device
        )
        super().__init__(model, real, positions, padded=not bool(batch.real.all()), meter=meter)
        self.total = n_layers(model)
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
        self.cur = prompt - 1  # column of the newest input token (every row has one there)
        self._span: Span | None = None  # of column cur, every row (SlotBatch.block_span)

    def advance(self, rows: list[int], first: int, last: int) -> None:
        """Bring column ``cur`` of ``rows`` from layer ``first - 1`` to ``last``, catching up as needed."""
        if not rows or first > last:
            return
        behind = min(self.behind[row] for row in rows)
        for row in rows:
            self.behind[row] = max(self.behind[row], last)
        if behind >= last:  # the usual case: nothing is behind
            self._deepen(rows, self.cur, first, last)
            return
        pick = row_index(rows, self.size, self.device)
        depth = self.depth[pick, : self.cur + 1]  # (rows, cur + 1)
        # the block starts at the first column some row has below layer ``last``; the columns a
        # row has already been through are frozen there (SlotBatch.run): one block for every row.
        # (Column cur is below ``last``, so every row has one. With copied fills depth is not
        # monotone along a row: deep generated columns sit after a shallow prompt, and freeze.)
        start = int((depth < last).int().argmax(dim=1).min())
        block = depth[:, start:]  # (rows, q)
        stop = self.cur + 1
        self.store[pick, start:stop] = self.run(
            self.store[pick, start:stop], rows, start, first, last, pick, block
        )
        self.depth[pick, start:stop] = block.clamp(min=last)

    def _deepen(self, rows: list[int], start: int, first: int, last: int) -> None:
        """Columns ``start..cur`` of ``rows``, all at layer ``first - 1``, through layer ``last``."""
        stop = self.cur + 1
        pick = row_index(rows, self.size, self.device)
        span = None
        if start == self.cur:  # the newest column alone: the step's span, built at its first block
            if self._span is None:
                self._span = self.block_span(self.store[:, self.cur : stop], slice(None), self.cur)
            span = self._span if isinstance(pick, slice) else self._span.select(pick)
        self.store[pick, start:stop] = self.run(
            self.store[pick, start:stop], rows, start, first, last, pick, span=span
        )
        self.depth[pick, start:stop] = last

    def rows_state(self, rows: list[int]) -> torch.Tensor:
        """(rows, hidden): column ``cur`` of ``rows`` at its current depth (a copy)."""
        return self.store[torch.tensor(rows, device=self.device), self.cur]

    def fill_copy(self, rows: list[int], layer: int, hidden: torch.Tensor, propagation: _Propagation) -> None:
        """Column ``cur`` of ``rows``, which exited at ``layer`` with state ``hidden`` (rows, h): the
        keys/values of layers ``layer+1..N`` projected from it replace whatever they held (states
        ridden along in a batch included, so a row's tokens never depend on its batch mates)."""
        index = torch.tensor(rows, device=self.device)
        rope = self.rotary.rope(hidden[:, None], self.positions[index, self.cur : self.cur + 1])
        keys, values = propagation.project(hidden, layer, rope)
        self.cache.fill(index, self.cur, layer, keys, values)
        self.depth[index, self.cur] = self.total
        if self.meter is not None:
            self.meter.fills(rows, self.total - layer)

    def read_head(self, rows: list[int]) -> HeadOutput:
        """The shared head on column ``cur`` of ``rows`` (their current depth)."""
        return self.head(self.store[row_index(rows, self.size, self.device), self.cur], rows)

    def append(self, tokens: list[int], reached: int | None, live: list[bool]) -> None:
        """A new input column holding ``tokens`` (per row); column ``cur`` of the live rows reached
        layer ``reached`` (None: it was filled through N, so the shallowest earlier column is
        still the one ``advance`` last caught up). Finished rows never compute the new column."""
        column = self.cur + 1
        # finished rows get an embedding too, but no block and no head ever reads it
        self.store[:, column] = embed(self.model, torch.tensor(tokens, device=self.device)[:, None])[:, 0]
        if reached is not None:
            for row in range(self.size):
                if live[row]:
                    self.behind[row] = reached
        self.cur = column
        self._span = None


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
    gate: ExitGate | None = None,
    fill: str = "exact",
) -> list[Generation]:
    """Early-exit greedy decoding with a KV cache; with the defaults the tokens of ``exit_nocache``.

    ``checkpoints`` ascend and end with the final layer N. A row's head is read at every visited
    checkpoint when the policy uses confidences, else only where the row exits (as the reference
    counts it). ``meter``, if given (``Meter(ModelShape.from_config(model.config), len(prompts))``),
    is filled with the work done.

    Options beyond the paper (``lite.decoders.gates``; the module docstring):

    - ``gate``: at an intermediate checkpoint only the rows it passes have their head read and may
      exit (a threshold policy's confidence still decides); the others go on without a head.
    - ``fill="copy"``: the keys/values of the layers above a token's exit are projected from its
      exit state (CALM's propagation) instead of computed exactly when a later token goes deeper;
      the prompt's positions (but the last, token 0's input) are still caught up exactly. Tokens
      then differ from the reference's; they do not depend on the batch.
    """
    total = n_layers(model)
    checkpoints = exit_points(model, checkpoints)
    if fill not in FILL_KINDS:
        raise ValueError(f"fill must be one of {', '.join(FILL_KINDS)}, got {fill!r}")
    if gate is not None and not policy.uses_confidence:
        raise ValueError("an exit gate decides where the head is read: it needs a threshold policy")
    propagation = _Propagation.for_model(model) if fill == "copy" else None
    batch = PaddedBatch.from_lists(list(prompts), pad_id, device_of(model))
    size = len(prompts)
    state = _ExitState(model, batch, batch.ids.shape[1] + max_new_tokens, meter)
    out = Collector(size, max_new_tokens, eos_ids, trace=False)
    step = 0
    while True:
        tokens, layers, confidence = [0] * size, [0] * size, [0.0] * size
        visited = [0] * size  # heads read while undecided
        checked = [0] * size  # gate checks
        live = [row for row in range(size) if out.live[row]]
        undecided = live
        exited = []  # (rows, layer, their states there) of early exits, for the copy fill
        earlier = state.rows_state(live) if gate is not None and gate.needs_previous else None
        previous = 0
        for index, layer in enumerate(checkpoints):
            # exact fill: every live row rides along to the deepest exit of the step; copied fills
            # leave the exited rows behind (see the module docstring)
            state.advance(undecided if propagation is not None else live, previous + 1, layer)
            previous = layer
            asked = undecided  # rows whose head is read here (when the policy reads heads)
            normed = None  # their states through the final norm, where the gate made them
            if gate is not None and layer < total:
                here = state.store[row_index(undecided, size, state.device), state.cur]  # (undecided, h)
                before = None
                if earlier is not None:  # the undecided rows' states at the previous checkpoint
                    at_live = {row: i for i, row in enumerate(live)}
                    before = earlier[[at_live[row] for row in undecided]]
                passes, normed = gate.decide(index, here, before)  # normed: (undecided, h) or None
                passing = passes.tolist()
                if meter is not None:
                    meter.gates(undecided, gate.kind)
                for row in undecided:
                    checked[row] += 1
                kept = [i for i, ok in enumerate(passing) if ok]  # positions in undecided
                asked = [undecided[i] for i in kept]
                if normed is not None and len(asked) < len(undecided):
                    normed = normed[kept]  # (asked, h)
                if earlier is not None:
                    earlier = state.rows_state(live)
            for row in asked:
                visited[row] += 1
            read, readers = None, asked
            if asked and normed is not None:
                read = state.head_normed(normed, asked)
            elif asked and (policy.uses_confidence or layer == total):
                read = state.read_head(asked)
            if layer == total:
                leave = undecided
            elif not asked:
                leave = []
            else:
                if read is None:  # unused by policies that ignore confidence
                    scores = torch.zeros(size, device=state.device)
                elif len(asked) == size:
                    scores = read.confidence
                else:
                    scores = torch.zeros(size, device=state.device).index_copy_(
                        0, torch.tensor(asked, device=state.device), read.confidence
                    )
                exits = policy.exits(step, index, scores).tolist()  # (batch,)
                leave = [row for row in asked if exits[row]]
            if read is None and leave:  # only the rows that exit need this head
                read, readers = state.read_head(leave), leave
            if leave:
                at = {row: i for i, row in enumerate(readers)}
                head_tokens, head_confidence = read.tokens.tolist(), read.confidence.tolist()
                for row in leave:
                    tokens[row], layers[row] = head_tokens[at[row]], layer
                    confidence[row] = head_confidence[at[row]]
                if propagation is not None and layer < total:
                    exited.append((leave, layer, state.rows_state(leave)))
                gone = set(leave)
                undecided = [row for row in undecided if row not in gone]
            if not undecided:
                break
        heads = visited if policy.uses_confidence else [1] * size
        out.add(tokens, layers, confidence, heads, gates=checked if gate is not None else None)
        if out.finished:
            return out.rows
        # a row's last token needs no deeper states: no later token reads them
        for rows, layer, hidden in exited:
            going = [i for i, row in enumerate(rows) if out.live[row]]
            if going:
                state.fill_copy([rows[i] for i in going], layer, hidden[going], propagation)
        state.append(tokens, None if propagation is not None else previous, out.live)
        step += 1
