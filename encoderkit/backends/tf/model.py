"""RoBERTa/BERT encoder + heads as a plain ``tf.Module`` (no Keras).

The module hierarchy mirrors the parameter tree of the shared mapping table
(``roberta/encoder/layer/0/attention/self/query/kernel``), so ``TFMaskedLM.tree()`` -- derived
from the modules, not from the table -- is what the table must fill exactly. The math follows
transformers' PyTorch modeling_roberta / modeling_bert (post-LayerNorm, exact erf GELU, additive
attention mask of float32's minimum). Each head the model carries is built from its record's steps
(core.heads) at the architecture's tensor paths. Serving signatures are ``tf.function``s with
fixed input signatures (dynamic batch and length), so nothing retraces per batch shape.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...core.heads import EVERY, FIRST, HEADS, MASKS, Act, Decoder, Linear, Norm
from ...core.spec import ModelSpec
from .layout import SAVED_MODEL_DIR, head_signature
from .tf_import import tf

IDS = tf.TensorSpec([None, None], tf.int64)


class Node(tf.Module):
    """A tf.Module whose variables are addressed by slash paths built from attribute names."""

    def tree(self, prefix: str = "") -> dict[str, tf.Variable]:
        out: dict[str, tf.Variable] = {}
        for name, value in vars(self).items():
            if name.startswith("_"):
                continue
            if isinstance(value, tf.Variable):
                out[prefix + name] = value
            elif isinstance(value, Node):
                out |= value.tree(f"{prefix}{name}/")
            elif isinstance(value, Sequence) and value and isinstance(value[0], Node):
                for i, child in enumerate(value):
                    out |= child.tree(f"{prefix}{name}/{i}/")
        return out


def mask_bias(mask):
    """Additive attention bias: 0 for real tokens, float32's minimum for padding (as transformers)."""
    # expand_dims, not [:, None, None, :]: TFLite's builtin strided_slice has no new_axis_mask (the
    # slice would need TF Select ops, which LiteRT's interpreter does not carry).
    return tf.expand_dims(tf.expand_dims(tf.cast(1 - mask, tf.float32), 1), 1) * tf.float32.min


def _var(shape, name):
    return tf.Variable(tf.zeros(shape, tf.float32), name=name)


class Dense(Node):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.kernel, self.bias = _var((n_in, n_out), "kernel"), _var((n_out,), "bias")

    def __call__(self, x):
        shape = tf.shape(x)
        y = tf.matmul(tf.reshape(x, [-1, self.kernel.shape[0]]), self.kernel) + self.bias
        return tf.reshape(y, tf.concat([shape[:-1], [self.kernel.shape[1]]], 0))


class LayerNorm(Node):
    def __init__(self, dim, eps):
        super().__init__()
        self.scale, self.bias, self._eps = _var((dim,), "scale"), _var((dim,), "bias"), eps

    def __call__(self, x):
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + self._eps) * self.scale + self.bias


class Embed(Node):
    def __init__(self, rows, dim):
        super().__init__()
        self.embedding = _var((rows, dim), "embedding")

    def __call__(self, ids):
        return tf.gather(self.embedding, ids)


class Embeddings(Node):
    def __init__(self, s: ModelSpec):
        super().__init__()
        self._s = s
        self.word_embeddings = Embed(s.vocab_size, s.hidden_size)
        self.position_embeddings = Embed(s.max_position_embeddings, s.hidden_size)
        self.token_type_embeddings = Embed(s.type_vocab_size, s.hidden_size)
        self.LayerNorm = LayerNorm(s.hidden_size, s.layer_norm_eps)

    def __call__(self, ids, types=None):
        s = self._s
        if s.architecture.positions_from_pad:  # positions count real tokens from pad_token_id + 1
            real = tf.cast(tf.not_equal(ids, s.pad_token_id), tf.int64)
            positions = tf.cumsum(real, axis=1) * real + s.pad_token_id
        else:
            positions = tf.broadcast_to(tf.range(tf.shape(ids, out_type=tf.int64)[1]), tf.shape(ids, out_type=tf.int64))
        x = (self.word_embeddings(ids) + self.position_embeddings(positions)
             + self.token_type_embeddings(tf.zeros_like(ids) if types is None else types))
        return self.LayerNorm(x)


class SelfAttention(Node):
    def __init__(self, s: ModelSpec):
        super().__init__()
        self._s = s
        self.query, self.key, self.value = (Dense(s.hidden_size, s.hidden_size) for _ in range(3))

    def __call__(self, x, bias):
        s = self._s
        b, t = tf.shape(x)[0], tf.shape(x)[1]
        split = lambda y: tf.transpose(tf.reshape(y, [b, t, s.num_heads, s.head_dim]), [0, 2, 1, 3])  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = tf.matmul(q, k, transpose_b=True) / np.float32(np.sqrt(s.head_dim)) + bias
        probs = tf.nn.softmax(scores, axis=-1)
        ctx = tf.reshape(tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3]), [b, t, s.hidden_size])
        return ctx, probs


class DenseNorm(Node):
    """dense, then LayerNorm of (output + residual)."""

    def __init__(self, n_in, s: ModelSpec):
        super().__init__()
        self.dense = Dense(n_in, s.hidden_size)
        self.LayerNorm = LayerNorm(s.hidden_size, s.layer_norm_eps)

    def __call__(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class Attention(Node):
    def __init__(self, s):
        super().__init__()
        self.self = SelfAttention(s)
        self.output = DenseNorm(s.hidden_size, s)

    def __call__(self, x, bias):
        ctx, probs = self.self(x, bias)
        return self.output(ctx, x), probs


class Intermediate(Node):
    def __init__(self, s):
        super().__init__()
        self.dense = Dense(s.hidden_size, s.intermediate_size)

    def __call__(self, x):
        return tf.nn.gelu(self.dense(x), approximate=False)


class Layer(Node):
    def __init__(self, s):
        super().__init__()
        self.attention, self.intermediate = Attention(s), Intermediate(s)
        self.output = DenseNorm(s.intermediate_size, s)

    def __call__(self, x, bias):
        x, probs = self.attention(x, bias)
        return self.output(self.intermediate(x), x), probs


class EncoderBody(Node):
    def __init__(self, s):
        super().__init__()
        self.layer = [Layer(s) for _ in range(s.num_layers)]

    def __call__(self, x, bias):
        hidden, probs = [x], []
        for layer in self.layer:
            x, p = layer(x, bias)
            hidden.append(x)
            probs.append(p)
        return hidden, probs


class Encoder(Node):
    def __init__(self, s):
        super().__init__()
        self.embeddings, self.encoder = Embeddings(s), EncoderBody(s)

    def __call__(self, ids, mask, types=None):
        return self.encoder(self.embeddings(ids, types), mask_bias(mask))


def place(root: Node, dotted: str, module: Node) -> Node:
    """Put ``module`` at tree path ``dotted`` under ``root`` (creating plain Nodes on the way)."""
    *parents, leaf = dotted.split(".")
    node = root
    for name in parents:
        if not isinstance(getattr(node, name, None), Node):
            setattr(node, name, Node())
        node = getattr(node, name)
    setattr(node, leaf, module)
    return module


class TFMaskedLM(Node):
    """The whole model and its serving signatures.

    Signatures (all take int64 ``input_ids`` and ``attention_mask`` of shape [batch, length], and
    ``token_type_ids`` too where the architecture has segment types, e.g. BERT):
    ``serving_default`` -> last_hidden_state; ``hidden_states`` -> [layers + 1, batch, length,
    hidden]; ``attentions`` -> [layers, batch, heads, length, length]; and per head (layout.py's
    names) ``logits`` at the rows it reads: at ``mask_positions`` [m, 2] of (row, position) ->
    [m, out] (fill_mask), the first token -> [batch, out] (classify), every token -> [batch,
    length, out] (zeros at padding).
    """

    def __init__(self, s: ModelSpec):
        super().__init__()
        self._s = s
        self._typed = s.architecture.segment_types
        if not s.bare:
            setattr(self, s.prefix, Encoder(s))
            self._body = getattr(self, s.prefix)
        else:
            self.embeddings, self.encoder = Embeddings(s), EncoderBody(s)
            self._body = None
        # Bookkeeping kept out of TF's object tracking (__dict__ directly): the head modules are
        # tracked where `place` put them, the signatures as attributes below.
        self.__dict__["_heads"] = {h: self._build_head(h) for h in s.heads}
        # Signatures are built per model: their inputs depend on the architecture (token types).
        # Only the heads the model has get one: saving traces every tf.function the module holds.
        sigs = {"serving_default": self._signature(self._serving),
                "hidden_states": self._signature(self._hidden_states),
                "attentions": self._signature(self._attentions)}
        for h in s.heads:
            extra = {"mask_positions": tf.TensorSpec([None, 2], tf.int64)} if HEADS[h].rows == MASKS else {}
            sigs[head_signature(h)] = self._signature(self._head_fn(h), **extra)
        self.__dict__["_sigs"] = sigs
        for name, fn in sigs.items():  # attributes: tf.saved_model tracks them
            setattr(self, name, fn)

    def _build_head(self, head: str) -> list:
        """The head's steps, each module placed at its tensor path (HF's tree)."""
        s = self._s
        built = []
        for step in s.architecture.steps(head):
            if isinstance(step, Linear):
                built.append(place(self, step.path, Dense(s.hidden_size, s.hidden_size if step.out == "hidden"
                                                          else s.head_out(head))))
            elif isinstance(step, Norm):
                built.append(place(self, step.path, LayerNorm(s.hidden_size, s.layer_norm_eps)))
            elif isinstance(step, Decoder):
                built.append(place(self, f"{step.path}.bias", _var((s.vocab_size,), "bias")))
            else:
                built.append(step)
        return built

    def _run_head(self, head: str, x):
        for step, built in zip(self._s.architecture.steps(head), self._heads[head]):
            if isinstance(step, Act):
                x = tf.nn.gelu(x, approximate=False) if step.fn == "gelu" else tf.math.tanh(x)
            elif isinstance(step, Decoder):
                table = self._word_embeddings()  # the tied decoder
                x = tf.matmul(x, table, transpose_b=True) + built
            else:
                x = built(x)
        return x

    def _word_embeddings(self):
        body = self._body if self._body is not None else self
        return body.embeddings.word_embeddings.embedding

    def _signature(self, fn, **extra):
        names = ["input_ids", "attention_mask"] + (["token_type_ids"] if self._typed else []) + list(extra)
        specs = [IDS, IDS] + ([IDS] if self._typed else []) + list(extra.values())
        specs = [tf.TensorSpec(x.shape, x.dtype, name=n) for x, n in zip(specs, names)]

        def call(*args):
            kw = dict(zip(names, args))
            return fn(kw.pop("input_ids"), kw.pop("attention_mask"), kw.pop("token_type_ids", None), **kw)
        return tf.function(call, input_signature=specs)

    def _encode(self, ids, mask, types=None):
        if self._body is not None:
            return self._body(ids, mask, types)
        return self.encoder(self.embeddings(ids, types), mask_bias(mask))

    def _head_fn(self, head: str):
        rows = HEADS[head].rows

        def run(input_ids, attention_mask, token_type_ids, mask_positions=None):
            hidden, _ = self._encode(input_ids, attention_mask, token_type_ids)
            last = hidden[-1]
            if rows == MASKS:
                return {"logits": self._run_head(head, tf.gather_nd(last, mask_positions))}
            if rows == FIRST:
                return {"logits": self._run_head(head, last[:, 0])}
            assert rows == EVERY
            out = self._run_head(head, last)
            return {"logits": out * tf.expand_dims(tf.cast(attention_mask, tf.float32), -1)}
        return run

    def _serving(self, input_ids, attention_mask, token_type_ids):
        hidden, _ = self._encode(input_ids, attention_mask, token_type_ids)
        return {"last_hidden_state": hidden[-1]}

    def _hidden_states(self, input_ids, attention_mask, token_type_ids):
        hidden, _ = self._encode(input_ids, attention_mask, token_type_ids)
        return {"hidden_states": tf.stack(hidden)}

    def _attentions(self, input_ids, attention_mask, token_type_ids):
        _, probs = self._encode(input_ids, attention_mask, token_type_ids)
        return {"attentions": tf.stack(probs)}

    def signatures(self) -> dict:
        """name -> the tf.function now at that attribute (what tf.saved_model.save is given)."""
        return {name: getattr(self, name) for name in self._sigs}


# --------------------------------------------------------------------------- the artifact on disk
def build_tf_model(spec: ModelSpec, state: dict[str, np.ndarray]) -> TFMaskedLM:
    """Our TFMaskedLM with canonical weights assigned through the shared mapping table."""
    from ...storage.mapping import map_state

    model = TFMaskedLM(spec)
    variables = model.tree()
    params = map_state(state, spec, {k: tuple(v.shape) for k, v in variables.items()})
    for path, value in params.items():
        variables[path].assign(value)
    return model
