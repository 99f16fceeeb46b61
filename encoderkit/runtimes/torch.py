"""The reference backend: Hugging Face transformers' own PyTorch RoBERTa/BERT classes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import Checkpoint, hf_config, load_checkpoint
from ..spec import ModelSpec
from .base import EncoderOutput, Runtime


def build_torch_model(spec: ModelSpec, state: dict[str, np.ndarray]) -> torch.nn.Module:
    """transformers' *ForMaskedLM (or bare *Model without a head) holding ``state``, in eval mode."""
    import transformers
    from transformers.initialization import no_init_weights

    config = transformers.AutoConfig.for_model(**hf_config(spec))
    arch = {"roberta": "Roberta", "bert": "Bert"}[spec.arch]
    with no_init_weights():  # every weight is overwritten below; random init of 355M params costs ~10 s
        if spec.has_mlm_head:
            model = getattr(transformers, f"{arch}ForMaskedLM")(config)
        else:
            model = getattr(transformers, f"{arch}Model")(config, add_pooling_layer=False)
    cut = 0 if spec.has_mlm_head else len(spec.prefix) + 1
    sd = {k[cut:]: torch.from_numpy(v) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    tied = {f"{spec.head_prefix}.decoder.weight", f"{spec.head_prefix}.decoder.bias"}
    leftover = [m for m in missing if m not in tied and not m.endswith("position_ids")]
    if leftover or unexpected:  # check_state guarantees neither; this guards the mapping itself
        raise RuntimeError(f"torch model state mismatch: missing {leftover}, unexpected {unexpected}")
    model.tie_weights()
    return model.eval()


class TorchRuntime(Runtime):
    name = "torch"
    fmt = "safetensors"

    def __init__(self, ckpt: Checkpoint, *, threads: int | None = None, max_tokens: int = 1024,
                 device: str | None = None):
        super().__init__(ckpt.spec, ckpt.tokenizer(), max_tokens=max_tokens)
        if threads:
            torch.set_num_threads(threads)
        # fp32 everywhere: torch leaves TF32 matmuls off by default, so CUDA stays within parity
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = build_torch_model(ckpt.spec, ckpt.state).to(self.device)
        self.encoder = getattr(self.model, self.spec.prefix) if self.spec.has_mlm_head else self.model
        self.head = (self.model.lm_head if self.spec.arch == "roberta" else self.model.cls) \
            if self.spec.has_mlm_head else None

    @classmethod
    def load(cls, directory: Path, **options: Any) -> TorchRuntime:
        allow_pickle = options.pop("allow_pickle", False)
        return cls(load_checkpoint(directory, allow_pickle=allow_pickle), **options)

    def _encode(self, input_ids, attention_mask, **flags):
        ids = torch.from_numpy(np.asarray(input_ids, dtype=np.int64)).to(self.device)
        mask = torch.from_numpy(np.asarray(attention_mask, dtype=np.int64)).to(self.device)
        if flags.get("output_attentions"):
            # sdpa does not return probabilities; eager computes the same attention explicitly.
            self.encoder.set_attn_implementation("eager")
        try:
            return self.encoder(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids),
                                **flags)
        finally:
            if flags.get("output_attentions"):
                self.encoder.set_attn_implementation("sdpa")

    @torch.inference_mode()
    def forward(self, input_ids, attention_mask, *, output_hidden_states=False, output_attentions=False):
        out = self._encode(input_ids, attention_mask, output_hidden_states=output_hidden_states,
                           output_attentions=output_attentions)
        to_np = lambda xs: tuple(x.float().cpu().numpy() for x in xs) if xs is not None else None  # noqa: E731
        return EncoderOutput(out.last_hidden_state.float().cpu().numpy(),
                             to_np(out.hidden_states) if output_hidden_states else None,
                             to_np(out.attentions) if output_attentions else None)

    @torch.inference_mode()
    def mask_logits(self, input_ids, attention_mask, mask_index):
        hidden = self._encode(input_ids, attention_mask).last_hidden_state
        rows = torch.from_numpy(np.asarray(mask_index, dtype=np.int64)).to(self.device)
        return self.head(hidden[rows[:, 0], rows[:, 1]]).float().cpu().numpy()
