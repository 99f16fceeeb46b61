"""The typed contracts the layers above agree on: a backend's and a format's catalog row, the
tolerance a backend is held to, what a forward pass returns, and the ``Encoder`` protocol that the
tasks are written against (every backend's ``Runtime`` satisfies it).

Core layer: no framework imports.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .spec import ModelSpec
from .tokenization import TextTokenizer


FP32_ATOL = 1e-4  # every fp32 export against torch: hidden states, logits, embeddings, attentions


@dataclass(frozen=True)
class Tolerance:
    """How close a backend must be to the torch reference.

    fp32 backends: ``atol``, the max |difference| of hidden states, head logits, embeddings and
    attention probabilities. Quantized backends: minimum accuracy against the reference on the
    probes (fill-mask top-1 agreement, top-5 overlap, min cosine of mean-pooled embeddings).
    """

    atol: float | None = None
    min_top1: float | None = None
    min_top5: float | None = None
    min_cosine: float | None = None

    @property
    def quantized(self) -> bool:
        return self.atol is None

    def thresholds(self) -> dict[str, float]:
        """{"top1": .., "top5": .., "cosine": ..} for a quantized backend (the ones that are set)."""
        return {k: v for k, v in (("top1", self.min_top1), ("top5", self.min_top5),
                                  ("cosine", self.min_cosine)) if v is not None}


@dataclass(frozen=True)
class BackendInfo:
    name: str
    runtime: str  # "module:Class" of its Runtime
    fmt: str  # the subdirectory of a `convert` output it loads (a FORMATS key)
    extra: str | None  # the pip extra that installs its framework (None: core dependencies)
    tolerance: Tolerance
    summary: str
    # The converter option value that must be on for this backend's artifact to exist (e.g. the
    # int8 encoder exists only with quantize=int8); None: always written by its format.
    variant: str | None = None
    # Compiles per input shape (XLA): the benchmark warms it up on the whole workload.
    compiles_per_shape: bool = False
    # Load options that keep it on the CPU (the benchmark's peers run there).
    cpu_options: tuple[tuple[str, Any], ...] = ()
    # Gives the last hidden state only: no inner layers (embed layer=k), no attention probabilities.
    # Parity tests, the attention viewer and validation ask only what such a backend provides.
    last_layer_only: bool = False
    # Its artifact is a pickle: loading it needs the caller's consent (allow_pickle / --allow-pickle).
    pickle: bool = False
    # "module:function" -> None where this machine can run it, else why not in one line (torch-bf16:
    # bf16 instructions); conversion validates it only where it runs, tests skip it elsewhere.
    machine_check: str | None = None

    @property
    def quantized(self) -> bool:
        return self.tolerance.quantized


@dataclass(frozen=True)
class FormatInfo:
    name: str
    converter: str  # "module:Class" of its Converter
    extra: str | None
    summary: str
    # "module:function(directory, spec)" proving an artifact is one this package exported, for
    # formats whose loading runs code (a SavedModel is a program); skipped only with trust_artifact.
    origin_check: str | None = None
    # Part of `--to all` (False: written only when asked for by name, e.g. the legacy pickle).
    in_all: bool = True


@dataclass(frozen=True)
class EncoderOutput:
    """Numpy outputs of one forward pass (float32)."""

    last_hidden_state: np.ndarray  # [batch, seq, hidden]
    hidden_states: tuple[np.ndarray, ...] | None = None  # num_layers + 1, embeddings first
    attentions: tuple[np.ndarray, ...] | None = None  # num_layers x [batch, heads, seq, seq]


class Encoder(Protocol):
    """What a task needs of a loaded model (``backends.base.Runtime`` provides it on every backend)."""

    name: str
    spec: ModelSpec
    tokenizer: TextTokenizer
    max_tokens: int

    def batches(self, ids: list[list[int]]) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
        """(indices, input_ids, attention_mask) of token-budget batches, padded per batch."""

    def padded_length(self, length: int) -> int: ...

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray, *,
                token_type_ids: np.ndarray | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> EncoderOutput: ...

    def hidden_layer(self, input_ids: np.ndarray, attention_mask: np.ndarray, layer: int, *,
                     token_type_ids: np.ndarray | None = None) -> np.ndarray: ...

    def head_logits(self, head: str, input_ids: np.ndarray, attention_mask: np.ndarray, *,
                    rows: np.ndarray | None = None, token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """Logits of ``head`` (core.heads) at the rows it reads: [m, out] at mask ``rows``,
        [batch, out] for the first token, [batch, seq, out] for every token (padding: 0)."""

    def require_head(self, head: str) -> None: ...

