"""JAX/Flax backend: jit-compiled forward over shape buckets.

Every batch is padded up to a bucket -- sequence length to the next power of two from 16 (capped
at the model's maximum), batch size to the next power of two -- so a workload compiles at most
once per (batch bucket, length bucket) pair instead of once per batch shape. Padded rows and
positions carry attention_mask 0 and are sliced off before results leave the backend.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..converters.flax import PARAMS_FILE, load_params
from ..models.flax_model import MaskedLM
from .base import EncoderOutput, Runtime, gather_rows


def _next_pow2(n: int, lo: int = 1) -> int:
    return max(lo, 1 << (int(n) - 1).bit_length())


def length_buckets(max_len: int) -> list[int]:
    """16, 32, 64, ... up to (and including) ``max_len``."""
    out, b = [], 16
    while b < max_len:
        out.append(b)
        b *= 2
    return out + [max_len]


class FlaxRuntime(Runtime):
    name = "flax"
    fmt = "flax"

    def __init__(self, directory: Path, *, max_tokens: int = 1024, threads: int | None = None):
        super().__init__(*self.saved_spec_and_tokenizer(directory), max_tokens=max_tokens)
        spec = self.spec
        self.params = jax.tree_util.tree_map(jnp.asarray, load_params(directory / PARAMS_FILE, spec))
        self.model = MaskedLM(spec)
        self.compilations = 0  # traces, i.e. XLA compilations: asserted bounded by the buckets
        self.buckets = length_buckets(spec.max_tokens_per_text)

    @classmethod
    def load(cls, directory: Path, **options: Any) -> FlaxRuntime:
        return cls(Path(directory), **options)

    # -- jitted pieces: `what` selects which outputs XLA keeps (the rest is dead code).
    @partial(jax.jit, static_argnums=(0, 4))
    def _run(self, params, ids, mask, what: str):
        self.compilations += 1  # runs only while tracing
        hidden, probs = self.model.apply({"params": params}, ids, mask, method=MaskedLM.encode)
        if what == "last":
            return hidden[-1]
        if what == "hidden":
            return jnp.stack(hidden)
        return jnp.stack(probs)

    @partial(jax.jit, static_argnums=(0,))
    def _head(self, params, rows):
        self.compilations += 1
        return self.model.apply({"params": params}, rows, method=MaskedLM.head)

    def __hash__(self):  # jit's static self: identity
        return id(self)

    def _padded(self, input_ids, attention_mask):
        b, t = input_ids.shape
        T = next(x for x in self.buckets if x >= t) if t <= self.buckets[-1] else t
        B = _next_pow2(b)
        ids = np.full((B, T), self.spec.pad_token_id, np.int32)
        mask = np.zeros((B, T), np.int32)
        ids[:b, :t], mask[:b, :t] = input_ids, attention_mask
        return ids, mask, b, t

    def _call(self, input_ids, attention_mask, what):
        ids, mask, b, t = self._padded(input_ids, attention_mask)
        out = np.asarray(self._run(self.params, ids, mask, what))
        if what == "last":
            return out[:b, :t]
        if what == "hidden":
            return out[:, :b, :t]
        return out[:, :b, :, :t, :t]

    def forward(self, input_ids, attention_mask, *, output_hidden_states=False, output_attentions=False):
        if output_hidden_states:
            hidden = tuple(self._call(input_ids, attention_mask, "hidden"))
            last = hidden[-1]
        else:
            hidden, last = None, self._call(input_ids, attention_mask, "last")
        att = tuple(self._call(input_ids, attention_mask, "probs")) if output_attentions else None
        return EncoderOutput(last, hidden, att)

    def hidden_layer(self, input_ids, attention_mask, layer):
        if layer == self.spec.num_layers:
            return self._call(input_ids, attention_mask, "last")
        return self._call(input_ids, attention_mask, "hidden")[layer]

    def mask_logits(self, input_ids, attention_mask, mask_index):
        rows = gather_rows(self._call(input_ids, attention_mask, "last"), mask_index)
        m = rows.shape[0]
        padded = np.zeros((_next_pow2(m), rows.shape[1]), np.float32)
        padded[:m] = rows
        return np.asarray(self._head(self.params, padded))[:m]
