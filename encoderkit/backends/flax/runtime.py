"""JAX/Flax backend: jit-compiled forward over shape buckets.

Every batch is padded up to a shape bucket, so a workload compiles once per bucket it touches
instead of once per batch shape:

- length: steps of 4 up to 32 tokens, then 8 up to 128, then 16, up to the model's maximum --
  from 16 tokens on each bucket at most 25 % above the one below it, above 64 under 13 %. (Powers of
  two, the first choice, padded the 19-token benchmark batch to 32 and doubled most embed
  batches: flax ran at 0.53x torch on work that, unpadded, it does about as fast as torch; steps
  of 32/64 above 128 still cost it ~12 % on the embed and long-document workloads.) Compilations
  stay bounded: a workload compiles at most one shape per batch it runs, and never a shape twice.
- batch: batches are planned in padded tokens, so a full batch of length bucket T holds
  ``max_tokens // T`` texts; a smaller (last) batch is padded to the next batch bucket (powers of
  two below full) when that wastes at most 1/8 of the rows, else run as bucket-sized pieces
  (20 rows: 16 + 4, not 25 with 5 rows of padding -- that padding alone made flax embed 0.87x
  torch, benchmarks/results/profile_flax.md).
- head rows (the heads run on gathered rows, as on every backend): the next power of two.

Padded rows and positions carry attention_mask 0 and are sliced off before results leave the
backend.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..base import EncoderOutput, Runtime, single_segment
from .model import PARAMS_FILE, Encoder, encoder_params, load_params, run_head


def _next_pow2(n: int, lo: int = 1) -> int:
    return max(lo, 1 << (int(n) - 1).bit_length())


# On GPUs JAX's default fp32 matmul precision is TF32 (10-bit mantissa), which alone breaks the
# 1e-4 parity with torch; full fp32 is asked for explicitly. On CPU it changes nothing.
MATMUL_PRECISION = "float32"

# (upper end, step): lengths up to 32 in steps of 4, then 8 up to 128; 16 beyond
_STEPS = ((32, 4), (128, 8))


def length_buckets(max_len: int) -> list[int]:
    """4, 8, ..., 32, 40, ..., 128, 144, 160, ... up to (and including) ``max_len``."""
    out, b = [], 0
    while True:
        b += next((step for end, step in _STEPS if b < end), 16)
        if b >= max_len:
            return out + [max_len]
        out.append(b)


def batch_buckets(full: int) -> list[int]:
    """Batch sizes a length bucket whose full batch holds ``full`` texts runs at: 1, 2, 4, ... < full, full."""
    return [1 << i for i in range(max(full, 1).bit_length()) if 1 << i < full] + [max(full, 1)]


class FlaxRuntime(Runtime):
    name = "flax"

    def __init__(self, directory: Path, *, max_tokens: int = 1024, threads: int | None = None):
        super().__init__(*self.saved_spec_and_tokenizer(directory), max_tokens=max_tokens)
        spec = self.spec
        self.params = jax.tree_util.tree_map(jnp.asarray, load_params(directory / PARAMS_FILE, spec))
        self.encoder_params = encoder_params(self.params, spec)
        self.model = Encoder(spec)
        self.device = jax.devices()[0]  # a GPU where JAX sees one, else the CPU
        self.compilations = 0  # traces, i.e. XLA compilations: asserted bounded by the buckets
        self.buckets = length_buckets(spec.max_tokens_per_text)

    @classmethod
    def load(cls, directory: Path, **options: Any) -> FlaxRuntime:
        return cls(Path(directory), **options)

    # -- jitted pieces: `what` selects which outputs XLA keeps (the rest is dead code).
    @partial(jax.jit, static_argnums=(0, 5))
    def _run(self, params, ids, mask, types, what: str):
        self.compilations += 1  # runs only while tracing
        with jax.default_matmul_precision(MATMUL_PRECISION):
            hidden, probs = self.model.apply({"params": params}, ids, mask, types)
        if what == "last":
            return hidden[-1]
        if what == "hidden":
            return jnp.stack(hidden)
        return jnp.stack(probs)

    @partial(jax.jit, static_argnums=(0, 2))
    def _head(self, params, head, rows):
        self.compilations += 1
        with jax.default_matmul_precision(MATMUL_PRECISION):
            return run_head(params, self.spec, head, rows)

    def __hash__(self):  # jit's static self: identity
        return id(self)

    def padded_length(self, length: int) -> int:
        return next((x for x in self.buckets if x >= length), length)

    def full_batch(self, padded_length: int) -> int:
        """Texts in a full batch of this padded length under the token budget."""
        return max(1, self.max_tokens // padded_length)

    def shape_buckets(self) -> list[tuple[int, int]]:
        """Every (batch, length) shape a planned batch can be padded to."""
        return [(B, T) for T in self.buckets for B in batch_buckets(self.full_batch(T))]

    def _padded(self, input_ids, attention_mask, token_type_ids=None):
        b, t = input_ids.shape
        T = self.padded_length(t)
        # a planned batch never exceeds the full size; a caller's own larger batch is padded to a power of two
        B = next((x for x in batch_buckets(self.full_batch(T)) if x >= b), _next_pow2(b))
        ids = np.full((B, T), self.spec.pad_token_id, np.int32)
        mask = np.zeros((B, T), np.int32)
        types = np.zeros((B, T), np.int32)  # always an input (zeros for single texts): one trace per shape
        ids[:b, :t], mask[:b, :t] = input_ids, attention_mask
        if token_type_ids is not None:
            types[:b, :t] = token_type_ids
        return ids, mask, types, b, t

    def pieces(self, rows: int, padded_length: int) -> list[int]:
        """Row counts a batch of ``rows`` runs as: one padded call when its batch bucket wastes at
        most 1/8 of the rows, else the largest bucket that fits, then the rest the same way."""
        sizes = batch_buckets(self.full_batch(padded_length))
        out = []
        while rows > 0:
            B = next((x for x in sizes if x >= rows), None)
            if B is None or (B - rows) * 8 <= B:  # a caller's own larger batch, or little waste
                return out + [rows]
            below = max(x for x in sizes if x <= rows)
            out.append(below)
            rows -= below
        return out

    def _call(self, input_ids, attention_mask, what, token_type_ids=None):
        pieces = self.pieces(input_ids.shape[0], self.padded_length(input_ids.shape[1]))
        if len(pieces) == 1:
            return self._call_one(input_ids, attention_mask, what, token_type_ids)
        outs, start = [], 0
        for n in pieces:
            rows = slice(start, start + n)
            start += n
            outs.append(self._call_one(input_ids[rows], attention_mask[rows], what,
                                       None if token_type_ids is None else token_type_ids[rows]))
        return np.concatenate(outs, axis=0 if what == "last" else 1)  # hidden/probs: [layer, batch, ...]

    def _call_one(self, input_ids, attention_mask, what, token_type_ids=None):
        ids, mask, types, b, t = self._padded(input_ids, attention_mask, token_type_ids)
        out = np.asarray(self._run(self.encoder_params, ids, mask, types, what))
        if what == "last":
            return out[:b, :t]
        if what == "hidden":
            return out[:, :b, :t]
        return out[:, :b, :, :t, :t]

    def forward(self, input_ids, attention_mask, *, token_type_ids=None, output_hidden_states=False,
                output_attentions=False):
        types = self._types(token_type_ids)
        if output_hidden_states:
            hidden = tuple(self._call(input_ids, attention_mask, "hidden", types))
            last = hidden[-1]
        else:
            hidden, last = None, self._call(input_ids, attention_mask, "last", types)
        att = tuple(self._call(input_ids, attention_mask, "probs", types)) if output_attentions else None
        return EncoderOutput(last, hidden, att)

    def _types(self, token_type_ids):
        """Token types reach the model where the architecture has segment types (BERT); elsewhere
        only all-zero types are meaningful."""
        if not self.spec.architecture.segment_types:
            single_segment(self, token_type_ids)
            return None
        return token_type_ids

    def hidden_layer(self, input_ids, attention_mask, layer, *, token_type_ids=None):
        types = self._types(token_type_ids)
        if layer == self.spec.num_layers:
            return self._call(input_ids, attention_mask, "last", types)
        return self._call(input_ids, attention_mask, "hidden", types)[layer]

    def run_head(self, head, hidden):
        m = hidden.shape[0]
        padded = np.zeros((_next_pow2(m), hidden.shape[1]), np.float32)  # one compile per power of two
        padded[:m] = hidden
        return np.asarray(self._head(self.params, head, padded))[:m]
