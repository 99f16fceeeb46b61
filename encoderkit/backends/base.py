"""The one runtime interface. A backend implements ``load``, ``forward`` and ``run_head`` (a head's
steps on gathered hidden rows); tokenization, input policy, batching, pooling, softmax/top-k and
decoding live once above them (``encoderkit/tasks/``), and which rows a head reads once here
(``head_logits``), so every backend answers the same way by construction.

Backends layer (its shared base: every backend folder may import this module, none imports another
backend's folder).
"""
from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..core.batching import pad_batch, plan_batches
from ..core.contracts import EncoderOutput
from ..core.errors import InputError
from ..core.heads import CLASSIFICATION, EVERY, FIRST, HEADS, MASKS, MLM
from ..core.spec import ModelSpec
from ..core.tokenization import TextTokenizer

__all__ = ["EncoderOutput", "Runtime", "gather_rows", "single_segment"]


class Runtime(ABC):
    """A loaded model on one backend (satisfies ``core.contracts.Encoder``).

    Args:
        spec: the model's shape.
        tokenizer: the model's tokenizer, with the input policy.
        max_tokens: token budget of one padded batch (batch size x longest sequence).
    """

    name: ClassVar[str]  # its row in the backend catalog
    # Backends that give what this one does not (a last-layer-only backend's inner layers); the
    # loader sets it from the catalog, for the error that names them.
    alternatives: tuple[str, ...] = ()

    def __init__(self, spec: ModelSpec, tokenizer: TextTokenizer, *, max_tokens: int = 1024):
        self.spec = spec
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    @staticmethod
    def saved_spec_and_tokenizer(directory: Path) -> tuple[ModelSpec, TextTokenizer]:
        """The ModelSpec and tokenizer an exporter stored beside its artifact."""
        from ..core.tokenization import load_tokenizer
        from ..storage.hf import SPEC_FILE, read_saved_spec
        from ..storage.manifest import JSON_MAX_BYTES, regular_file

        for name in (SPEC_FILE, "tokenizer.json"):  # never through a symlink, a FIFO or a huge file
            regular_file(Path(directory) / name, what=name, max_bytes=JSON_MAX_BYTES)
        spec = read_saved_spec(directory)
        return spec, TextTokenizer(load_tokenizer(directory), spec.max_tokens_per_text, spec.mask_token)

    # ------------------------------------------------------------------ what a backend provides
    @classmethod
    @abstractmethod
    def load(cls, directory: Path, **options: Any) -> Runtime:
        """Load from a directory holding this backend's artifact."""

    @abstractmethod
    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray, *,
                token_type_ids: np.ndarray | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> EncoderOutput:
        """Run the encoder on a padded int64 batch (token types: None = all zero)."""

    def run_head(self, head: str, hidden: np.ndarray) -> np.ndarray:
        """Head ``head``'s logits [m, out] for gathered hidden rows [m, hidden] (float32)."""
        raise InputError(f"backend {self.name} cannot run a {head} head")

    def hidden_layer(self, input_ids: np.ndarray, attention_mask: np.ndarray, layer: int, *,
                     token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """Hidden state of ``layer`` (0 = embeddings, num_layers = last). Backends may specialise."""
        if layer == self.spec.num_layers:
            return self.forward(input_ids, attention_mask, token_type_ids=token_type_ids).last_hidden_state
        out = self.forward(input_ids, attention_mask, token_type_ids=token_type_ids, output_hidden_states=True)
        return out.hidden_states[layer]

    # ------------------------------------------------------------------ heads, once for every backend
    def head_logits(self, head: str, input_ids: np.ndarray, attention_mask: np.ndarray, *,
                    rows: np.ndarray | None = None, token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """Logits of ``head`` at the rows its record says it reads (``core.heads``).

        Returns:
            [m, out] at the (row, position) pairs ``rows`` (MASKS); [batch, out] for the first
            token (FIRST); [batch, seq, out] for every token, zeros at padding (EVERY).
        Raises:
            InputError: the model has no such head, or ``rows`` missing for a head that needs them.
        """
        self.require_head(head)
        last = self.forward(input_ids, attention_mask, token_type_ids=token_type_ids).last_hidden_state
        return read_rows(HEADS[head].rows, last, attention_mask, rows,
                         lambda h: self.run_head(head, np.ascontiguousarray(h, dtype=np.float32)))

    def require_head(self, head: str) -> None:
        """Raises InputError (one line, from the head's record) when the model lacks ``head``."""
        if not self.spec.has_head(head):
            raise InputError(HEADS[head].missing)

    # The two heads every earlier version offered as methods (kept: users call them).
    def mask_logits(self, input_ids: np.ndarray, attention_mask: np.ndarray, mask_index: np.ndarray, *,
                    token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """Vocabulary logits [m, vocab] at ``mask_index`` ([m, 2] rows of (batch, position)) only."""
        return self.head_logits(MLM, input_ids, attention_mask, rows=mask_index, token_type_ids=token_type_ids)

    def classify_logits(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                        token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """Sequence-classification logits [batch, num_labels] (the head on the first token)."""
        return self.head_logits(CLASSIFICATION, input_ids, attention_mask, token_type_ids=token_type_ids)

    def require_classifier(self) -> None:
        self.require_head(CLASSIFICATION)

    def artifact_bytes(self) -> int | None:
        """Bytes of the files this runtime loaded, where they are a part of its format directory
        (e.g. one ONNX encoder of several); None: the whole directory."""
        return None

    def padded_length(self, length: int) -> int:
        """The sequence length a batch whose longest text has ``length`` tokens really runs at.

        Backends that pad to shape buckets (flax) override it, so batches are planned in the
        tokens that are actually computed."""
        return length

    # ------------------------------------------------------------------ shared, above backends
    def batches(self, ids: list[list[int]]):
        """(indices, input_ids, attention_mask) of token-budget batches, padded per batch."""
        for batch in plan_batches([len(x) for x in ids], self.max_tokens, self.padded_length):
            input_ids, attention_mask = pad_batch([ids[i] for i in batch], self.spec.pad_token_id)
            yield batch, input_ids, attention_mask

    # The tasks, written once in encoderkit/tasks/ (kept as methods: users call rt.embed(...)).
    def fill_mask(self, texts: Sequence[str], top_k: int = 5, targets: Sequence[str] | None = None,
                  *, truncate: bool = False) -> list[list[list[dict[str, Any]]]]:
        """See ``encoderkit.tasks.fill_mask.fill_mask``."""
        from ..tasks.fill_mask import fill_mask

        return fill_mask(self, texts, top_k, targets, truncate=truncate)

    def embed(self, texts: Sequence[str], pooling: str = "mean", layer: int = -1,
              normalize: bool = False, *, truncate: bool = False) -> np.ndarray:
        """See ``encoderkit.tasks.embed.embed``."""
        from ..tasks.embed import embed

        return embed(self, texts, pooling, layer, normalize, truncate=truncate)

    def classify(self, texts: Sequence[str], pairs: Sequence[str] | None = None, top_k: int | None = 1,
                 *, truncate: bool = False) -> list[list[dict[str, Any]]]:
        """See ``encoderkit.tasks.classify.classify``."""
        from ..tasks.classify import classify

        return classify(self, texts, pairs, top_k, truncate=truncate)

    def attentions(self, text: str, pair: str | None = None, *, truncate: bool = False):
        """See ``encoderkit.tasks.attentions.attentions``: an ``AttentionRecord``."""
        from ..tasks.attentions import attentions

        return attentions(self, text, pair, truncate=truncate)

    def __getattr__(self, name: str):
        """Every other task of the task table as a method too: ``rt.ner(texts)``, ``rt.qa(pairs)``."""
        if name.startswith("_"):
            raise AttributeError(name)
        from ..tasks import TASKS

        task = TASKS.get(name.replace("_", "-"))
        if task is None:
            raise AttributeError(f"{type(self).__name__} has no attribute or task {name!r}")
        return functools.partial(task.function, self)


def read_rows(kind: str, last: np.ndarray, attention_mask: np.ndarray, rows: np.ndarray | None, run):
    """Gather the hidden rows a head reads from ``last`` [b, t, h], run ``run`` on them ([m, h] ->
    [m, out]) and lay the result out as ``Runtime.head_logits`` documents."""
    if kind == MASKS:
        if rows is None:
            raise InputError("this head reads given positions: pass rows ([m, 2] of (row, position))")
        rows = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
        return run(gather_rows(last, rows))
    if kind == FIRST:
        return run(last[:, 0])
    if kind == EVERY:
        real = np.asarray(attention_mask).astype(bool)
        out = run(last[real])
        full = np.zeros((*real.shape, out.shape[-1]), dtype=out.dtype)
        full[real] = out
        return full
    raise ValueError(f"unknown head rows {kind!r}")


def single_segment(rt: Runtime, token_type_ids: np.ndarray | None) -> None:
    """Exports written before token types were an input (and architectures without segment
    types) accept only all-zero types.

    Raises:
        InputError: non-zero token types (a BERT text pair) on such a backend.
    """
    if token_type_ids is not None and np.any(np.asarray(token_type_ids) != 0):
        raise InputError(f"backend {rt.name} takes single-segment input only (its export has no "
                         "token_type_ids); re-run `encoderkit convert` to get a pair-capable export")


def gather_rows(hidden: np.ndarray, mask_index: np.ndarray) -> np.ndarray:
    """Hidden vectors [m, h] at (batch, position) rows."""
    return hidden[mask_index[:, 0], mask_index[:, 1]]
