"""Decoding in fixed columns: the layout, cache and block runner shared by the KV-cached early
exit (``lite.decoders.cached``) and self-speculative decoding (``lite.decoders.speculative``).

Both keep one column per position of a left-padded batch, for every row, whatever depth or
acceptance a row reached: the rows' positions stay aligned, so a block of columns of several rows
runs as one batched call.

- ``SlotCache``: keys/values of every layer in a fixed column per position. ``DynamicCache``
  appends one block per layer for all rows at once, so every row would need the same cache length
  in every layer; with per-row exits (or acceptances) the rows' depths differ, hence columns.
- ``SlotBatch``: per (row, column) whether the token is real and its RoPE position, the
  ``SlotCache``, and ``run``: layers ``first..last`` on a block of columns of some rows, with the
  mask and RoPE factors those columns need (the one block runner of both decoders).
- ``Meter`` counts the work as it is done: kernel FLOPs (attention over the full query x key
  rectangle, padding included) and, per row, the causal FLOPs of ``lite.flops.kvcache_flops``;
  plus how often each (row, column, layer) state was computed.
"""

from __future__ import annotations

import torch

from lite.decoders.blocks import (
    HeadOutput,
    RotaryTable,
    Span,
    exit_head,
    make_span,
    n_layers,
    normed_head,
    row_index,
    run_layers,
)
from lite.flops import ModelShape, fill_flops, gate_flops, head_flops, layer_flops


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
        self._shape = (n_layers(model), batch, kv_heads, head_dim)
        self._like = {"dtype": weight.dtype, "device": weight.device}
        # every layer's keys (values) in one tensor, so a column of many layers is written at once
        # (``fill``); ``keys[i]`` / ``values[i]`` are layer i's views, each (batch, kv_heads, width, d)
        self.all_keys = self._zeros(width)  # (layers, batch, kv_heads, width, d)
        self.all_values = self._zeros(width)
        self._views()
        self._rows: torch.Tensor | None = None
        self._start = 0
        self._write: torch.Tensor | None = None

    def _zeros(self, width: int) -> torch.Tensor:
        layers, batch, kv_heads, head_dim = self._shape
        return torch.zeros((layers, batch, kv_heads, width, head_dim), **self._like)

    def _views(self) -> None:
        self.keys = list(self.all_keys.unbind(0))
        self.values = list(self.all_values.unbind(0))

    @property
    def width(self) -> int:
        return self.all_keys.shape[3]

    def grow(self, width: int) -> None:
        """Make room for ``width`` columns (keeps what is stored)."""
        if width <= self.width:
            return
        old_keys, old_values = self.all_keys, self.all_values
        self.all_keys, self.all_values = self._zeros(width), self._zeros(width)
        self.all_keys[..., : old_keys.shape[3], :] = old_keys
        self.all_values[..., : old_values.shape[3], :] = old_values
        self._views()

    def fill(
        self, rows: torch.Tensor, column: int, first: int, keys: torch.Tensor, values: torch.Tensor
    ) -> None:
        """Store ``keys``/``values`` (layers, rows, kv_heads, d) in ``column`` of batch ``rows`` for
        layers ``first..first+layers-1`` (0-based): one write per tensor whatever the layer count."""
        end = first + keys.shape[0]
        self.all_keys[first:end, :, :, column].index_copy_(1, rows, keys)
        self.all_values[first:end, :, :, column].index_copy_(1, rows, values)

    def target(self, rows: torch.Tensor | None, start: int, write: torch.Tensor | None = None) -> SlotCache:
        """Aim the next block at batch ``rows`` (None: all, in order) from column ``start``;
        ``write`` (rows, 1, q, 1) bool, if given, stores only the block's columns marked True and
        keeps what the others hold (``SlotBatch.run``'s frozen columns)."""
        self._rows, self._start, self._write = rows, start, write
        return self

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        # keys, values: (rows, kv_heads, q, head_dim) of the block, already rotated
        end = self._start + keys.shape[2]
        k, v = self.keys[layer_idx], self.values[layer_idx]
        block_k, block_v = k[:, :, self._start : end], v[:, :, self._start : end]  # views
        if self._rows is None:
            if self._write is not None:
                keys = torch.where(self._write, keys, block_k)
                values = torch.where(self._write, values, block_v)
            block_k.copy_(keys)
            block_v.copy_(values)
            return k[:, :, :end], v[:, :, :end]  # views: no copy of the cache
        # index_copy_ / index_select rather than k[rows, ...]: the same elements, about 3x faster
        # on a CPU (advanced indexing goes through a generic gather)
        if self._write is not None:
            keys = torch.where(self._write, keys, block_k.index_select(0, self._rows))
            values = torch.where(self._write, values, block_v.index_select(0, self._rows))
        block_k.index_copy_(0, self._rows, keys)
        block_v.index_copy_(0, self._rows, values)
        return k[:, :, :end].index_select(0, self._rows), v[:, :, :end].index_select(0, self._rows)


class Meter:
    """Work a decoder really does, counted block by block (matmul FLOPs as in ``lite.flops``).

    The counts live on the CPU whatever device the decoder runs on: they are bookkeeping, read
    after decoding, and a metered run is never a timed one (``lite.latency``).
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
        needed: torch.Tensor | None = None,
    ) -> None:
        """Layers ``first..last`` ran on columns ``start..end-1`` of ``rows`` against keys ``0..end-1``;
        ``needed`` (rows, q) bool, if given, marks the columns whose states were kept (the others
        were computed and thrown away: kernel work, no state)."""
        count, queries = last - first + 1, end - start
        self.calls += 1
        self.layer_kernel += len(rows) * count * layer_flops(self.shape, queries, end)
        shape = self.shape
        per_key = 4 * shape.heads * shape.head_dim
        rows = torch.tensor(rows, device="cpu")  # (rows,)
        is_real = real[:, start:end].cpu()[rows].long()  # (rows, q)
        if needed is not None:
            is_real = is_real * needed.cpu().long()
        # a real query at position p attends causally to p + 1 keys (its own included)
        keys = positions[:, start:end].cpu()[rows] + 1  # (rows, q)
        per_position = (2 * shape.layer_weights + per_key * keys) * is_real
        self.causal.index_add_(0, rows, per_position.sum(dim=1) * count)
        if self.computed.shape[1] < end:
            grown = torch.zeros((self.computed.shape[0], end, shape.layers), dtype=torch.int32, device="cpu")
            grown[:, : self.computed.shape[1]] = self.computed
            self.computed = grown
        self.computed[rows, start:end, first - 1 : last] += is_real[:, :, None].int()

    def gates(self, rows: list[int], kind: str) -> None:
        """A ``kind`` exit gate checked one position of each of ``rows``."""
        flops = gate_flops(self.shape, kind)
        self.head_kernel += len(rows) * flops
        self.causal[rows] += flops

    def fills(self, rows: list[int], layers: int) -> None:
        """Keys/values of ``layers`` layers projected for one position of each of ``rows``."""
        flops = fill_flops(self.shape, layers)
        self.layer_kernel += len(rows) * flops
        self.causal[rows] += flops

    def heads(self, rows: list[int], positions: int = 1) -> None:
        """The head ran on ``positions`` positions of each of ``rows``."""
        flops = head_flops(self.shape, positions)
        self.head_kernel += len(rows) * flops
        self.causal[rows] += flops  # rows never repeat within a call


class SlotBatch:
    """Rows decoded in fixed columns, and the block runner over them.

    ``real`` and ``positions`` (batch, width) say per column whether it holds a real token (not
    padding, not a hole) and its RoPE position; the owner keeps them current as columns fill.
    ``padded``: whether some key may not be real, so that ``make_span`` must look at the keys;
    False lets a block whose shape needs no mask go without one.
    """

    def __init__(self, model, real: torch.Tensor, positions: torch.Tensor, padded: bool, meter: Meter | None):
        self.model = model
        self.real = real  # (batch, width) bool
        self.positions = positions  # (batch, width) long
        self.padded = padded
        self.meter = meter
        self.size, width = real.shape
        self.device = real.device
        self.cache = SlotCache(model, self.size, width)
        self.rotary = RotaryTable(model)

    def run(
        self,
        hidden: torch.Tensor,
        rows: list[int],
        start: int,
        first: int,
        last: int,
        pick: torch.Tensor | slice | None = None,
        depth: torch.Tensor | None = None,
        span: Span | None = None,
    ) -> torch.Tensor:
        """Layers ``first..last`` on ``hidden`` (rows, q, hidden), the block of columns
        ``start..start+q-1`` of batch ``rows`` (ascending), attending to their columns
        ``0..start+q-1``; returns layer ``last``'s output (rows, q, hidden). ``pick``: the
        ``row_index`` of ``rows``, where the caller has made it already.

        ``depth`` (rows, q), if given, is the deepest layer each column has already been through,
        its ``hidden`` being that layer's output: a column is *frozen* at the layers it has been
        through (its state passes on unchanged, its cached keys/values are kept) and computed from
        the next one on. Rows whose catch-up blocks start at different columns then share one
        block: the frozen columns cost kernel work but no extra call, which is what a batch pays
        for on a CPU. Frozen columns' outputs are garbage nobody reads (finite: their inputs are).

        ``span``: the block's rope and mask (``block_span``), where the caller has them.
        """
        stop = start + hidden.shape[1]
        if pick is None:
            pick = row_index(rows, self.size, self.device)
        if span is None:
            span = self.block_span(hidden, pick, start)
        cache_rows = None if isinstance(pick, slice) else pick
        if depth is not None:  # frozen columns: layer by layer while some column skips the layer
            deepest = int(depth.max())
            while first <= min(last, deepest):
                needed = depth < first  # (rows, q)
                out = run_layers(
                    self.model,
                    hidden,
                    first,
                    first,
                    span,
                    self.cache.target(cache_rows, start, needed[:, None, :, None]),
                )
                hidden = torch.where(needed[..., None], out, hidden)
                if self.meter is not None:
                    self.meter.layers(rows, start, stop, first, first, self.real, self.positions, needed)
                first += 1
            if first > last:
                return hidden
        out = run_layers(self.model, hidden, first, last, span, self.cache.target(cache_rows, start))
        if self.meter is not None:
            self.meter.layers(rows, start, stop, first, last, self.real, self.positions)
        return out

    def block_span(self, hidden: torch.Tensor, pick: torch.Tensor | slice, start: int) -> Span:
        """The rope and mask of the block ``hidden`` (rows, q, h): columns ``start..start+q-1`` of
        the batch rows ``pick`` selects, attending to their columns ``0..start+q-1``. A step that
        runs several blocks on its newest column builds that column's span once, for every row, and
        takes a subset's with ``Span.select``."""
        stop = start + hidden.shape[1]
        real = self.real[pick, :stop]  # (rows, stop): the block's keys, cached ones first
        positions = self.positions[pick, start:stop]  # (rows, q)
        return make_span(
            self.model, hidden, real, positions, self.rotary, padded=None if self.padded else False
        )

    def head(self, hidden: torch.Tensor, rows: list[int], positions: int = 1) -> HeadOutput:
        """The shared head on ``hidden``: ``positions`` positions of each of batch ``rows``
        ((rows, hidden), (rows, seq, hidden) read at the last position, or (rows * positions, hidden))."""
        if self.meter is not None:
            self.meter.heads(rows, positions)
        return exit_head(self.model, hidden)

    def head_normed(self, normed: torch.Tensor, rows: list[int]) -> HeadOutput:
        """``head`` on states the final norm was already applied to (rows, hidden)."""
        if self.meter is not None:
            self.meter.heads(rows)
        return normed_head(self.model, normed)
