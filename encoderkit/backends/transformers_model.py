"""The PyTorch model: transformers' own classes holding canonical weights (the reference), and
the export wrapper the ONNX converter traces (``ExportEncoder``). Backends layer, shared base: the
torch runtime runs it and the ONNX exporter traces it."""
from __future__ import annotations

import numpy as np
import torch

from ..core.spec import ModelSpec
from ..storage.hf import hf_config


def build_torch_model(spec: ModelSpec, state: dict[str, np.ndarray]) -> torch.nn.Module:
    """transformers' class for the spec's head (*ForMaskedLM, *ForSequenceClassification, ...; the
    bare *Model without one) holding ``state``, in eval mode.

    Raises:
        RuntimeError: the state does not fill the model exactly (a mapping bug, not user input:
            ``checkpoint.check_state`` already checked the names and shapes).
    """
    import transformers
    from transformers.initialization import no_init_weights

    config = transformers.AutoConfig.for_model(**hf_config(spec))
    arch = spec.architecture
    with no_init_weights():  # every weight is overwritten below; random init of 355M params costs ~10 s
        if spec.heads:
            model = getattr(transformers, arch.hf_class(spec.heads[-1]))(config)
        else:
            model = getattr(transformers, arch.base_class)(config, add_pooling_layer=False)
    cut = 0 if not spec.bare else len(spec.prefix) + 1
    sd = {k[cut:]: torch.from_numpy(v) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    tied = {f"{spec.head_prefix}.decoder.weight", f"{spec.head_prefix}.decoder.bias"}
    leftover = [m for m in missing if m not in tied and not m.endswith("position_ids")]
    if leftover or unexpected:
        raise RuntimeError(f"torch model state mismatch: missing {leftover}, unexpected {unexpected}")
    model.tie_weights()
    return model.eval()


def encoder_of(model: torch.nn.Module, spec: ModelSpec) -> torch.nn.Module:
    """The bare encoder (*Model) inside a *ForMaskedLM, or the model itself."""
    return getattr(model, spec.prefix) if not spec.bare else model


class ExportEncoder(torch.nn.Module):
    """input_ids, attention_mask (and token_type_ids where the architecture has segment types)
    -> last hidden state, or (analysis) every hidden state and attention probability: the
    signature the ONNX graphs have."""

    def __init__(self, encoder: torch.nn.Module, analysis: bool):
        super().__init__()
        self.encoder, self.analysis = encoder, analysis

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=types,
                           output_hidden_states=self.analysis, output_attentions=self.analysis)
        if self.analysis:
            return (*out.hidden_states, *out.attentions)
        return out.last_hidden_state
