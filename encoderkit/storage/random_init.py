"""`encoderkit init-random`: deterministic random checkpoints with real tokenizers.

No hub is reachable where tests run, so tests, the demo and the benchmarks build their models
here. Biases and LayerNorm parameters are random too (not HF's zeros/ones init): a converter that
drops or misplaces any tensor then changes the outputs, and parity tests see it. Storage layer.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.architectures import ARCHITECTURES, DEFAULT_ARCH
from ..core.errors import UnknownNameError
from ..core.errors import InputError
from ..core.heads import HEADS, LABELS, MLM, TOKEN_CLASSIFICATION
from ..core.spec import ModelSpec
from .checkpoint import expected_shapes
from .files import atomic_dir
from .hf import hf_config, write_safetensors
from .manifest import write_manifest
from .random_tokenizers import RANDOM_TOKENIZERS, tokenizer_config

# size -> (hidden, layers, heads, intermediate, vocab (byte-level BPE, WordPiece), max tokens)
SIZES = {
    "tiny": (32, 2, 4, 64, (1000, 1000), 128),
    "small": (128, 4, 4, 512, (5000, 5000), 256),
    "base": (768, 12, 12, 3072, (50265, 30522), 512),
    "large": (1024, 24, 16, 4096, (50265, 30522), 512),  # roberta-large exactly
}


# The labels a random head with labels gets unless told otherwise.
DEFAULT_LABELS = {TOKEN_CLASSIFICATION: ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")}


def random_spec(size: str, arch: str = DEFAULT_ARCH, head: str = MLM,
                labels: tuple[str, ...] | None = None) -> ModelSpec:
    """The ModelSpec of a random checkpoint of ``size`` (tiny/small/base/large) and ``arch``, with
    ``head`` (a name of ``core.heads.HEADS``; its ``labels`` where it has labels)."""
    if size not in SIZES:
        raise UnknownNameError(f"unknown size {size!r}; choose one of: {', '.join(SIZES)}")
    if arch not in ARCHITECTURES:
        raise UnknownNameError(f"unknown arch {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")
    if head not in HEADS:
        raise UnknownNameError(f"unknown head {head!r}; choose one of: {', '.join(HEADS)}")
    if HEADS[head].output == LABELS:
        labels = tuple(labels or DEFAULT_LABELS.get(head, ("LABEL_0", "LABEL_1")))
        if len(set(labels)) != len(labels) or not all(isinstance(x, str) and x for x in labels):
            raise InputError(f"--labels must be distinct non-empty names, got {list(labels)}")
    elif labels:
        raise InputError(f"head {head!r} has no labels; drop --labels")
    a = ARCHITECTURES[arch]
    hidden, layers, heads, inter, vocab, max_tokens = SIZES[size]
    v = vocab[0] if a.random_tokenizer == "bpe" else vocab[1]
    ids = {k: (v - 1 if i < 0 else i) for k, i in RANDOM_TOKENIZERS[a.random_tokenizer][1].items()}
    pad = ids["pad"]
    return ModelSpec(
        arch=arch, vocab_size=v, hidden_size=hidden, num_layers=layers, num_heads=heads,
        intermediate_size=inter, max_position_embeddings=max_tokens + a.position_offset(pad),
        type_vocab_size=2 if a.segment_types else 1, layer_norm_eps=1e-12 if a.segment_types else 1e-5,
        hidden_act="gelu", pad_token_id=pad, position_offset=a.position_offset(pad),
        heads=(head,), labels=labels or (), mask_token=a.special.mask, mask_token_id=ids["mask"], cls_token_id=ids["cls"],
        sep_token_id=ids["sep"])


def random_state(spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    """Random float32 weights: N(0, 0.02) matrices and biases, LayerNorm scales 1 + N(0, 0.02)."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in expected_shapes(spec).items():
        x = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
        if "LayerNorm.weight" in name or "layer_norm.weight" in name:
            x += np.float32(1.0)
        state[name] = x
    return state


def init_random(out: Path, size: str = "tiny", *, seed: int = 0, arch: str = DEFAULT_ARCH,
                force: bool = False, head: str = MLM, labels: tuple[str, ...] | None = None) -> ModelSpec:
    """Write a random checkpoint (config, safetensors, tokenizer, manifest) to ``out`` atomically.

    Raises:
        UnknownNameError: unknown size or arch.
        InputError: ``out`` exists and ``force`` is False.
    """
    spec = random_spec(size, arch, head, labels)
    build = RANDOM_TOKENIZERS[spec.architecture.random_tokenizer][0]
    write_random_checkpoint(out, spec, build(spec.vocab_size, seed, spec.max_tokens_per_text), seed=seed,
                            force=force, manifest={"size": size, "arch": arch, "seed": seed, "head": head})
    return spec


def write_random_checkpoint(out: Path, spec: ModelSpec, tokenizer: dict, *, seed: int, force: bool = False,
                            manifest: dict | None = None) -> None:
    """Write ``spec``'s random weights (``random_state(spec, seed)``), its config and ``tokenizer``
    (tokenizer.json content) to ``out`` atomically, with a manifest marking it random, then
    ``manifest``'s fields. ``init_random`` and callers with their own tokenizer use it."""
    tok_config, special = tokenizer_config(spec.architecture, spec.max_tokens_per_text)
    with atomic_dir(Path(out), force=force) as tmp:
        (tmp / "config.json").write_text(json.dumps(hf_config(spec), indent=2) + "\n")
        (tmp / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False) + "\n")
        (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
        (tmp / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
        write_safetensors(random_state(spec, seed), tmp)
        write_manifest(tmp, {"kind": "checkpoint", "random": True, **(manifest or {})})
