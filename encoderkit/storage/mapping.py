"""ONE declarative table from canonical PyTorch names to the parameter tree of our TF and Flax
encoders (the tree Hugging Face's Flax models used: ``roberta/encoder/layer/0/attention/self/query/kernel``).

Each rule: a source-name pattern, the target path template (dots become slashes), and the
transform. The first matching rule wins. Completeness is checked both ways: every source tensor
is used, every target parameter filled, every shape asserted. Storage layer.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import numpy as np

from ..core.errors import MappingError
from ..core.spec import ModelSpec

Transform = Callable[[np.ndarray], np.ndarray] | None

# torch.nn.Linear stores weight as [out, in]; a kernel is [in, out] -- the one transpose.
RULES: list[tuple[re.Pattern, str, Transform, str]] = [
    (re.compile(r"^(.*)_embeddings\.weight$"), r"\1_embeddings.embedding", None, "embedding table"),
    (re.compile(r"^(.*)\.(LayerNorm|layer_norm)\.weight$"), r"\1.\2.scale", None, "LayerNorm gain"),
    (re.compile(r"^(.*)\.(LayerNorm|layer_norm)\.bias$"), r"\1.\2.bias", None, "LayerNorm bias"),
    (re.compile(r"^(.*)\.weight$"), r"\1.kernel", np.transpose, "Linear weight, transposed"),
    (re.compile(r"^(.*)\.bias$"), r"\1.bias", None, "Linear bias"),
]


def target_path(name: str, spec: ModelSpec) -> tuple[str, Transform]:
    """The tree path (slash-separated) and transform for canonical tensor ``name``.

    Raises:
        MappingError: no rule matches.
    """
    for pattern, template, transform, _ in RULES:
        if pattern.match(name):
            path = pattern.sub(template, name).replace(".", "/")
            if spec.bare:  # a bare *Model's tree has no "roberta/" / "bert/" level
                path = path.removeprefix(spec.prefix + "/")
            return path, transform
    raise MappingError(f"no mapping rule for tensor {name}")


def map_state(state: Mapping[str, np.ndarray], spec: ModelSpec,
              target_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Canonical weights -> flat {tree path: array} for a framework whose parameters have
    ``target_shapes``.

    Raises:
        MappingError: naming an unmapped/extra source tensor, an unfilled target, or a shape clash.
    """
    out: dict[str, np.ndarray] = {}
    for name, value in state.items():
        path, transform = target_path(name, spec)
        if path not in target_shapes:
            raise MappingError(f"tensor {name} maps to {path}, which the model does not have")
        arr = np.ascontiguousarray(transform(value) if transform else value, dtype=np.float32)
        if tuple(arr.shape) != tuple(target_shapes[path]):
            raise MappingError(f"tensor {name}: shape {tuple(arr.shape)} after mapping, "
                               f"{path} expects {tuple(target_shapes[path])}")
        out[path] = arr
    missing = sorted(set(target_shapes) - set(out))
    if missing:
        raise MappingError(f"parameter {missing[0]} is not filled by any tensor"
                           + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return out


def expected_tree(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Flat {path: shape} of the tree our TF and Flax encoders hold for ``spec``."""
    from .checkpoint import expected_shapes

    tree = {}
    for name, shape in expected_shapes(spec).items():
        path, transform = target_path(name, spec)
        tree[path] = tuple(reversed(shape)) if transform is np.transpose else tuple(shape)
    return tree


def nest(flat: Mapping[str, np.ndarray]) -> dict:
    """{"a/b/c": x} -> {"a": {"b": {"c": x}}}."""
    root: dict = {}
    for path, value in flat.items():
        node = root
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return root


def flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
    """Inverse of ``nest``."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out |= flatten(value, path)
        else:
            out[path] = value
    return out
