"""Flax: ``flax/flax_model.msgpack`` with Hugging Face's Flax parameter tree and names.

The tree (``roberta/encoder/layer/0/attention/self/query/kernel``, ``lm_head/dense/kernel``, ...)
comes from the shared mapping table (encoderkit.mapping), checked against the tree our linen
model declares, so every tensor is used and every parameter filled.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import Checkpoint, copy_model_files
from ..errors import ArtifactError
from ..mapping import flatten, map_state, nest
from ..spec import ModelSpec
from .base import Converter, register

PARAMS_FILE = "flax_model.msgpack"


def model_tree(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Flat {path: shape} of the parameters the linen model declares (no weights computed)."""
    import jax
    import jax.numpy as jnp

    from ..models.flax_model import MaskedLM

    ids = jnp.ones((1, 4), jnp.int32)
    shapes = jax.eval_shape(MaskedLM(spec).init, jax.random.PRNGKey(0), ids, ids)
    return {k: tuple(v.shape) for k, v in flatten(shapes["params"]).items()}


def save_params(params: dict[str, np.ndarray], path: Path) -> None:
    from flax import serialization

    path.write_bytes(serialization.msgpack_serialize(nest(params)))


def load_params(path: Path, spec: ModelSpec) -> dict:
    """Read flax_model.msgpack and check its tree against the model.

    Raises:
        ArtifactError: unreadable file, or a tree/shape that does not match the model.
    """
    from flax import serialization

    try:
        tree = serialization.msgpack_restore(path.read_bytes())
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing; re-run `encoderkit convert --to flax`") from None
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise ArtifactError(f"{path}: not a Flax msgpack file ({type(e).__name__})") from None
    if not isinstance(tree, dict):
        raise ArtifactError(f"{path}: not a parameter tree")
    flat, expected = flatten(tree), model_tree(spec)
    for key in sorted(set(expected) | set(flat)):
        if key not in flat:
            raise ArtifactError(f"{path}: parameter {key} is missing")
        if key not in expected:
            raise ArtifactError(f"{path}: unexpected parameter {key}")
        if tuple(np.shape(flat[key])) != expected[key]:
            raise ArtifactError(f"{path}: parameter {key} has shape {tuple(np.shape(flat[key]))}, "
                                f"the model expects {expected[key]}")
    return tree


@register
class FlaxConverter(Converter):
    name = "flax"
    backends = ("flax",)

    def export(self, ckpt: Checkpoint, out: Path) -> dict[str, Any]:
        copy_model_files(ckpt.directory, out, ckpt.spec)
        params = map_state(ckpt.state, ckpt.spec, model_tree(ckpt.spec))
        save_params(params, out / PARAMS_FILE)
        return {"parameter tree": f"{len(params)} arrays in {PARAMS_FILE} (Hugging Face Flax layout)"}
