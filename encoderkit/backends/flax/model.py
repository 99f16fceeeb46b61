"""RoBERTa/BERT encoder in Flax linen, and the heads as functions of their steps.

Linen is used (not nnx) because its module names *are* the parameter tree: naming submodules
``roberta/encoder/layer/0/attention/self/query`` reproduces, by construction, the tree Hugging
Face's Flax models saved in ``flax_model.msgpack``, so old JAX code can load our files. Heads are
not modules: each is its record's steps (core.heads) applied to the parameters at its tensor
paths (the mapping table's tree paths), with linen's own Dense and LayerNorm math.
The math follows transformers' PyTorch modeling_roberta / modeling_bert (post-LayerNorm,
exact erf GELU, additive attention mask of the dtype's minimum).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from pathlib import Path

import numpy as np

from ...core.errors import ArtifactError
from ...core.heads import Act, Decoder, Linear, Norm
from ...core.spec import ModelSpec
from ...storage.checkpoint import head_shapes
from ...storage.mapping import flatten, nest, target_path


def mask_bias(attention_mask):
    """Additive attention bias: 0 for real tokens, float32's minimum for padding (as transformers)."""
    return jnp.where(attention_mask[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min)


class SelfAttention(nn.Module):
    spec: ModelSpec

    @nn.compact
    def __call__(self, x, bias):
        s = self.spec
        b, t, _ = x.shape
        split = lambda y: y.reshape(b, t, s.num_heads, s.head_dim)  # noqa: E731
        q = split(nn.Dense(s.hidden_size, name="query")(x))
        k = split(nn.Dense(s.hidden_size, name="key")(x))
        v = split(nn.Dense(s.hidden_size, name="value")(x))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.float32(s.head_dim)) + bias
        probs = jax.nn.softmax(scores, axis=-1)
        return jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, t, s.hidden_size), probs


class Attention(nn.Module):
    spec: ModelSpec

    def setup(self):
        self.self = SelfAttention(self.spec)
        self.output = DenseNorm(self.spec, self.spec.hidden_size)

    def __call__(self, x, bias):
        ctx, probs = self.self(x, bias)
        return self.output(ctx, x), probs


class DenseNorm(nn.Module):
    """``dense`` then LayerNorm of (output + residual): BERT's *Output blocks."""

    spec: ModelSpec
    features: int

    @nn.compact
    def __call__(self, x, residual):
        y = nn.Dense(self.features, name="dense")(x)
        return nn.LayerNorm(epsilon=self.spec.layer_norm_eps, name="LayerNorm")(y + residual)


class Intermediate(nn.Module):
    spec: ModelSpec

    @nn.compact
    def __call__(self, x):
        return nn.gelu(nn.Dense(self.spec.intermediate_size, name="dense")(x), approximate=False)


class Layer(nn.Module):
    spec: ModelSpec

    def setup(self):
        self.attention = Attention(self.spec)
        self.intermediate = Intermediate(self.spec)
        self.output = DenseNorm(self.spec, self.spec.hidden_size)

    def __call__(self, x, bias):
        x, probs = self.attention(x, bias)
        return self.output(self.intermediate(x), x), probs


class LayerCollection(nn.Module):
    spec: ModelSpec

    def setup(self):
        self.layers = [Layer(self.spec, name=str(i)) for i in range(self.spec.num_layers)]

    def __call__(self, x, bias):
        hidden, probs = [x], []
        for layer in self.layers:
            x, p = layer(x, bias)
            hidden.append(x)
            probs.append(p)
        return hidden, probs


class EncoderBody(nn.Module):
    spec: ModelSpec

    def setup(self):
        self.layer = LayerCollection(self.spec)

    def __call__(self, x, bias):
        return self.layer(x, bias)


class Embeddings(nn.Module):
    spec: ModelSpec

    @nn.compact
    def __call__(self, input_ids, attention_mask, token_type_ids=None):
        s = self.spec
        types = jnp.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        if s.architecture.positions_from_pad:  # real tokens count from pad_token_id + 1, pads sit at pad_token_id
            real = (input_ids != s.pad_token_id).astype(jnp.int32)
            positions = jnp.cumsum(real, axis=1) * real + s.pad_token_id
        else:
            positions = jnp.broadcast_to(jnp.arange(input_ids.shape[1]), input_ids.shape)
        x = (nn.Embed(s.vocab_size, s.hidden_size, name="word_embeddings")(input_ids)
             + nn.Embed(s.max_position_embeddings, s.hidden_size, name="position_embeddings")(positions)
             + nn.Embed(s.type_vocab_size, s.hidden_size, name="token_type_embeddings")(types))
        return nn.LayerNorm(epsilon=s.layer_norm_eps, name="LayerNorm")(x)


class Encoder(nn.Module):
    """Embeddings + layers: returns (hidden states of every layer, attention probabilities)."""

    spec: ModelSpec

    def setup(self):
        self.embeddings = Embeddings(self.spec)
        self.encoder = EncoderBody(self.spec)

    def __call__(self, input_ids, attention_mask, token_type_ids=None):
        return self.encoder(self.embeddings(input_ids, attention_mask, token_type_ids), mask_bias(attention_mask))


def encoder_params(params: dict, spec: ModelSpec) -> dict:
    """The encoder's part of the model's parameter tree (heads' parameters left out: BERT's pooler
    sits inside the encoder's subtree in HF's layout)."""
    tree = params if spec.bare else params[spec.prefix]
    return {"embeddings": tree["embeddings"], "encoder": tree["encoder"]}


def _at(params: dict, path: str):
    node = params
    for part in path.split("/"):
        node = node[part]
    return node


def run_head(params: dict, spec: ModelSpec, head: str, x):
    """Head ``head``'s steps on hidden rows ``x`` [m, hidden] -> logits [m, out]."""
    for step in spec.architecture.steps(head):
        if isinstance(step, Linear):
            path = target_path(f"{step.path}.weight", spec)[0].rpartition("/")[0]
            x = nn.Dense(_at(params, path)["kernel"].shape[1]).apply({"params": _at(params, path)}, x)
        elif isinstance(step, Norm):
            path = target_path(f"{step.path}.weight", spec)[0].rpartition("/")[0]
            x = nn.LayerNorm(epsilon=spec.layer_norm_eps).apply({"params": _at(params, path)}, x)
        elif isinstance(step, Act):
            x = nn.gelu(x, approximate=False) if step.fn == "gelu" else jnp.tanh(x)
        elif isinstance(step, Decoder):
            table = _at(params, target_path(f"{spec.prefix}.embeddings.word_embeddings.weight", spec)[0])
            bias = _at(params, target_path(f"{step.path}.bias", spec)[0])
            # contract against the table's rows directly: `h @ table.T` made XLA:CPU copy the transposed
            # 50265 x 1024 table on every call (171 ms for one mask row; this form: 7 ms)
            x = jnp.einsum("mh,vh->mv", x, table) + bias
    return x


# --------------------------------------------------------------------------- the artifact on disk
# ``flax/flax_model.msgpack``: Hugging Face's Flax parameter tree and names, so old JAX code can
# load it; the tree comes from the shared mapping table, checked against what MaskedLM declares.

PARAMS_FILE = "flax_model.msgpack"


def model_tree(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Flat {path: shape} of the parameters: the linen encoder's own declaration (no weights
    computed), under the architecture's prefix unless the model is bare, and each head's tensors at
    their mapping-table paths."""
    ids = jnp.ones((1, 4), jnp.int32)
    shapes = jax.eval_shape(Encoder(spec).init, jax.random.PRNGKey(0), ids, ids)
    prefix = "" if spec.bare else spec.prefix + "/"
    tree = {prefix + k: tuple(v.shape) for k, v in flatten(shapes["params"]).items()}
    for head in spec.heads:
        for name, shape in head_shapes(spec, head).items():
            path, transform = target_path(name, spec)
            tree[path] = tuple(reversed(shape)) if transform is not None else tuple(shape)
    return tree


def save_params(params: dict[str, np.ndarray], path: Path) -> None:
    from flax import serialization

    path.write_bytes(serialization.msgpack_serialize(nest(params)))


def load_params(path: Path, spec: ModelSpec) -> dict:
    """Read flax_model.msgpack and check its tree against the model.

    Raises:
        ArtifactError: unreadable file, or a tree/shape that does not match the model.
    """
    from flax import serialization

    expected = model_tree(spec)
    if not path.is_file() or path.is_symlink():
        raise ArtifactError(f"{path} is missing or not a regular file; re-run `encoderkit convert --to flax`")
    limit = 4 * sum(int(np.prod(s)) for s in expected.values()) + (1 << 20)  # fp32 + msgpack framing
    if path.stat().st_size > limit:  # never read more than the spec's weights can occupy
        raise ArtifactError(f"{path}: {path.stat().st_size} bytes, more than this model's weights "
                            f"({limit} bytes at most); re-run `encoderkit convert --to flax`")
    try:
        with open(path, "rb") as f:
            tree = serialization.msgpack_restore(f.read(limit + 1))
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing; re-run `encoderkit convert --to flax`") from None
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise ArtifactError(f"{path}: not a Flax msgpack file ({type(e).__name__})") from None
    if not isinstance(tree, dict):
        raise ArtifactError(f"{path}: not a parameter tree")
    flat = flatten(tree)
    for key in sorted(set(expected) | set(flat)):
        if key not in flat:
            raise ArtifactError(f"{path}: parameter {key} is missing")
        if key not in expected:
            raise ArtifactError(f"{path}: unexpected parameter {key}")
        if tuple(np.shape(flat[key])) != expected[key]:
            raise ArtifactError(f"{path}: parameter {key} has shape {tuple(np.shape(flat[key]))}, "
                                f"the model expects {expected[key]}")
    return tree
