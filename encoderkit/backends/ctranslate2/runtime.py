"""CTranslate2 backend: its ``Encoder`` gives the last hidden state; the heads are encoderkit's.

CTranslate2 takes ids plus per-row lengths (right padding) and numbers positions from 0 within
each row: its converter drops the rows below RoBERTa's pad offset from the position table, so
this is RoBERTa's pad-offset numbering for every right-padded row. Token types go through where a
BERT pair has them. Inner hidden states and attention probabilities are not computed by
CTranslate2's encoder: asking for them is a one-line InputError naming the backends that give them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np

from ...core.errors import ArtifactError, InputError
from ..base import EncoderOutput, Runtime
from ..heads import HeadModule, run_head_numpy
from .layout import COMPUTE_TYPES, canonical_tensors, head_file, model_dir


class CTranslate2Runtime(Runtime):
    """A ``convert --to ctranslate2`` directory on CTranslate2's CPU encoder.

    Args (options of ``load``):
        threads: intra-op threads (default: CTranslate2's choice).
        max_tokens: batch token budget.
        device: "cpu" (default) or "cuda" where CTranslate2 was built with CUDA.
    """

    name = "ctranslate2"
    variant = "fp32"

    def __init__(self, directory: Path, *, threads: int | None = None, max_tokens: int = 1024,
                 device: str = "cpu"):
        super().__init__(*self.saved_spec_and_tokenizer(directory), max_tokens=max_tokens)
        self.directory = Path(directory)
        self.model_path = model_dir(self.directory, self.variant)
        try:
            self.encoder = ctranslate2.Encoder(str(self.model_path), device=device,
                                               compute_type=COMPUTE_TYPES[self.variant],
                                               intra_threads=threads or 0)
        except (RuntimeError, ValueError) as e:
            raise ArtifactError(f"{self.model_path}: CTranslate2 cannot load it "
                                f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        self.heads = {h: self._load_head(h) for h in self.spec.heads}

    @classmethod
    def load(cls, directory: Path, **options: Any) -> CTranslate2Runtime:
        return cls(Path(directory), **options)

    def _load_head(self, head: str) -> HeadModule:
        from safetensors.torch import load_file

        path = self.directory / head_file(head)
        if not path.is_file() or path.is_symlink():
            raise ArtifactError(f"{path} is missing; re-run `encoderkit convert --to ctranslate2`")
        tensors = canonical_tensors(self.spec, head, load_file(str(path)), path)
        return HeadModule(self.spec.architecture.steps(head), tensors, self.spec.layer_norm_eps).eval()

    def artifact_bytes(self) -> int | None:
        files = [p for p in self.model_path.rglob("*") if p.is_file()]
        files += [self.directory / head_file(h) for h in self.heads]
        return sum(p.stat().st_size for p in files)

    # ------------------------------------------------------------------ what the backend provides
    def _last_layer_only(self, what: str) -> InputError:
        others = f" ({', '.join(self.alternatives)})" if self.alternatives else ""
        return InputError(f"backend {self.name} gives the last layer only, not {what}; use another "
                          f"backend for it{others}")

    def _run(self, input_ids, attention_mask, token_type_ids) -> np.ndarray:
        ids = np.asarray(input_ids)
        mask = np.asarray(attention_mask).astype(bool)
        lengths = mask.sum(axis=1)
        # CTranslate2 masks by length: only right padding (every batch encoderkit builds) says the same
        if ids.ndim != 2 or mask.shape != ids.shape or \
                not np.array_equal(mask, np.arange(ids.shape[1])[None, :] < lengths[:, None]):
            raise InputError(f"backend {self.name} takes right-padded batches only (attention mask of ones "
                             "then zeros in every row)")
        if lengths.min(initial=1) < 1:
            raise InputError(f"backend {self.name}: a row of the batch has no tokens")
        types = None
        if token_type_ids is not None and np.any(np.asarray(token_type_ids) != 0):
            types = np.asarray(token_type_ids, dtype=np.int64).tolist()
        out = self.encoder.forward_batch(ctranslate2.StorageView.from_array(np.ascontiguousarray(ids, np.int32)),
                                         ctranslate2.StorageView.from_array(lengths.astype(np.int32)),
                                         token_type_ids=types)
        hidden = np.array(out.last_hidden_state, dtype=np.float32, copy=True)
        return hidden * mask[:, :, None]  # pad positions: zeros (CTranslate2 leaves them undefined)

    def forward(self, input_ids, attention_mask, *, token_type_ids=None, output_hidden_states=False,
                output_attentions=False) -> EncoderOutput:
        if output_hidden_states or output_attentions:
            raise self._last_layer_only("hidden states of every layer" if output_hidden_states
                                        else "attention probabilities")
        return EncoderOutput(self._run(input_ids, attention_mask, token_type_ids))

    def hidden_layer(self, input_ids, attention_mask, layer: int, *, token_type_ids=None) -> np.ndarray:
        if layer != self.spec.num_layers:
            raise self._last_layer_only(f"layer {layer} of {self.spec.num_layers}")
        return self._run(input_ids, attention_mask, token_type_ids)

    def run_head(self, head, hidden):
        return run_head_numpy(self.heads[head], hidden)


class CTranslate2Int8Runtime(CTranslate2Runtime):
    name = "ctranslate2-int8"
    variant = "int8"
