"""RoBERTa/BERT encoder + MLM head in Flax linen.

Linen is used (not nnx) because its module names *are* the parameter tree: naming submodules
``roberta/encoder/layer/0/attention/self/query`` reproduces, by construction, the tree Hugging
Face's Flax models saved in ``flax_model.msgpack``, so old JAX code can load our files.
The math follows transformers' PyTorch modeling_roberta / modeling_bert (post-LayerNorm,
exact erf GELU, additive attention mask of the dtype's minimum).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from pathlib import Path

import numpy as np

from ..errors import ArtifactError
from ..mapping import flatten, nest
from ..spec import ModelSpec


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


def grow(module: nn.Module, leaves: tuple[tuple[str, int], ...]) -> None:
    """In ``setup``: a Dense of ``features`` at each dotted path of ``leaves`` (sub-blocks on the
    way), so the parameter tree carries head tensors where Hugging Face's Flax classes had them."""
    groups: dict[str, list[tuple[str, int]]] = {}
    for path, features in leaves:
        first, _, rest = path.partition(".")
        groups.setdefault(first, []).append((rest, features))
    for first, items in groups.items():
        if len(items) == 1 and not items[0][0]:
            setattr(module, first, nn.Dense(items[0][1]))
        else:
            setattr(module, first, DenseTree(tuple(items)))


def lookup(module: nn.Module, dotted: str) -> nn.Module:
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


class DenseTree(nn.Module):
    leaves: tuple[tuple[str, int], ...]

    def setup(self):
        grow(self, self.leaves)


class Encoder(nn.Module):
    """Embeddings + layers: returns (hidden states of every layer, attention probabilities).

    ``extra``: head Dense layers that live inside the encoder's tree (BERT's pooler)."""

    spec: ModelSpec
    extra: tuple[tuple[str, int], ...] = ()

    def setup(self):
        self.embeddings = Embeddings(self.spec)
        self.encoder = EncoderBody(self.spec)
        grow(self, self.extra)

    def __call__(self, input_ids, attention_mask, token_type_ids=None):
        return self.encoder(self.embeddings(input_ids, attention_mask, token_type_ids), mask_bias(attention_mask))


class MLMHead(nn.Module):
    """dense -> gelu -> LayerNorm -> tied decoder (the word embeddings) + bias."""

    spec: ModelSpec

    @nn.compact
    def __call__(self, h, word_embeddings):
        s = self.spec
        a = s.architecture
        norm = a.mlm_norm.rpartition(".")[2]
        if a.mlm_transform is None:  # dense + LayerNorm directly in the head (RoBERTa)
            h = nn.gelu(nn.Dense(s.hidden_size, name="dense")(h), approximate=False)
            h = nn.LayerNorm(epsilon=s.layer_norm_eps, name=norm)(h)
        else:  # inside a sub-block (BERT's "transform")
            h = Transform(s, norm, name=a.mlm_transform)(h)
        bias = self.param("bias", nn.initializers.zeros, (s.vocab_size,))
        # contract against the table's rows directly: `h @ table.T` made XLA:CPU copy the transposed
        # 50265 x 1024 table on every call (171 ms for one mask row; this form: 7 ms)
        return jnp.einsum("mh,vh->mv", h, word_embeddings) + bias


class Transform(nn.Module):
    spec: ModelSpec
    norm: str  # the LayerNorm's name in the tree

    @nn.compact
    def __call__(self, h):
        h = nn.gelu(nn.Dense(self.spec.hidden_size, name="dense")(h), approximate=False)
        return nn.LayerNorm(epsilon=self.spec.layer_norm_eps, name=self.norm)(h)


class Nested(nn.Module):
    """Puts the MLM head at a dotted tree path (``cls.predictions``): one level per name."""

    spec: ModelSpec
    parts: tuple[str, ...]

    def setup(self):
        child = MLMHead(self.spec) if len(self.parts) == 1 else Nested(self.spec, self.parts[1:])
        setattr(self, self.parts[0], child)

    def __call__(self, h, word_embeddings):
        return getattr(self, self.parts[0])(h, word_embeddings)


class MaskedLM(nn.Module):
    """The whole model; its parameter tree is HF's Flax *ForMaskedLM / *ForSequenceClassification
    tree (or *Model without a head).

    ``encode`` runs the encoder; ``head`` projects hidden vectors [m, hidden] onto the vocabulary;
    ``classify`` maps [CLS] rows [m, hidden] to label logits (dense -> tanh -> out).
    """

    spec: ModelSpec

    def _classifier_leaves(self) -> tuple[tuple[str, int], ...]:
        s = self.spec
        if not s.has_classifier:
            return ()
        a = s.architecture
        return ((a.cls_dense, s.hidden_size), (a.cls_out, s.num_labels))

    def setup(self):
        s = self.spec
        inner = tuple((p.removeprefix(s.prefix + "."), f) for p, f in self._classifier_leaves()
                      if p.startswith(s.prefix + "."))
        outer = tuple((p, f) for p, f in self._classifier_leaves() if not p.startswith(s.prefix + "."))
        if not s.bare:
            setattr(self, s.prefix, Encoder(s, inner))
            grow(self, outer)
        else:  # bare model: embeddings/encoder at the top of the tree
            self.embeddings = Embeddings(s)
            self.encoder = EncoderBody(s)
        if s.has_mlm_head:
            first, *rest = s.head_prefix.split(".")  # lm_head | cls.predictions
            setattr(self, first, MLMHead(s) if not rest else Nested(s, tuple(rest)))

    def encode(self, input_ids, attention_mask, token_type_ids=None):
        s = self.spec
        if not s.bare:
            return getattr(self, s.prefix)(input_ids, attention_mask, token_type_ids)
        return self.encoder(self.embeddings(input_ids, attention_mask, token_type_ids), mask_bias(attention_mask))

    def head(self, hidden):
        s = self.spec
        table = self.variables["params"][s.prefix]["embeddings"]["word_embeddings"]["embedding"]
        return getattr(self, s.head_prefix.split(".")[0])(hidden, table)

    def classify(self, cls_rows):
        a = self.spec.architecture
        return lookup(self, a.cls_out)(jnp.tanh(lookup(self, a.cls_dense)(cls_rows)))

    def __call__(self, input_ids, attention_mask, token_type_ids=None):
        hidden, _ = self.encode(input_ids, attention_mask, token_type_ids)
        out = [hidden[-1]]
        if self.spec.has_mlm_head:
            out.append(self.head(hidden[-1][:, 0]))
        if self.spec.has_classifier:
            out.append(self.classify(hidden[-1][:, 0]))
        return tuple(out)


# --------------------------------------------------------------------------- the artifact on disk
# ``flax/flax_model.msgpack``: Hugging Face's Flax parameter tree and names, so old JAX code can
# load it; the tree comes from the shared mapping table, checked against what MaskedLM declares.

PARAMS_FILE = "flax_model.msgpack"


def model_tree(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Flat {path: shape} of the parameters the linen model declares (no weights computed)."""
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
