"""TF SavedModel and Flax artifacts: standalone loading, the mapping table's completeness checks,
msgpack round trips, and the bounded number of jit compilations."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import encoderkit
from encoderkit.storage.checkpoint import load_checkpoint
from encoderkit.conversion import convert
from encoderkit.core.errors import ArtifactError, MappingError
from encoderkit.storage.mapping import expected_tree, map_state

pytestmark = pytest.mark.xdist_group("tfflax")


@pytest.fixture(scope="module")
def tiny_converted(tiny_roberta, tmp_path_factory):
    out = tmp_path_factory.mktemp("tfflax") / "out"
    convert(tiny_roberta, ["tf", "flax"], out)
    return out


def test_mapping_rejects_missing_and_extra_tensors(tiny_roberta):
    ck = load_checkpoint(tiny_roberta)
    tree = expected_tree(ck.spec)
    state = dict(ck.state)
    state.pop("roberta.encoder.layer.0.attention.self.key.bias")
    with pytest.raises(MappingError, match=r"roberta/encoder/layer/0/attention/self/key/bias is not filled"):
        map_state(state, ck.spec, tree)
    state = dict(ck.state) | {"roberta.encoder.layer.0.attention.self.extra.weight": np.zeros((32, 32), np.float32)}
    with pytest.raises(MappingError, match=r"tensor roberta\.encoder\.layer\.0\.attention\.self\.extra\.weight"):
        map_state(state, ck.spec, tree)
    state = dict(ck.state)
    state["lm_head.dense.weight"] = np.zeros((32, 16), np.float32)
    with pytest.raises(MappingError, match=r"lm_head\.dense\.weight: shape \(16, 32\)"):
        map_state(state, ck.spec, tree)


def test_savedmodel_serves_with_tensorflow_alone(tiny_converted, tiny_roberta):
    """A fresh interpreter that imports only tensorflow and numpy calls the fill_mask signature."""
    ref = encoderkit.load(tiny_roberta)
    ids, mask = (np.array(x) for x in ([[0, 50, 999, 60, 2, 1], [0, 70, 80, 999, 90, 2]],
                                       [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]))
    rows = np.argwhere(ids == 999)
    want = ref.mask_logits(ids, mask, rows)
    script = textwrap.dedent(f"""
        import json, sys, numpy as np, tensorflow as tf
        # (tensorflow's own import pulls keras internals; our model needs no Keras class)
        assert not any(m.startswith(("encoderkit", "torch")) for m in sys.modules)
        m = tf.saved_model.load({str(tiny_converted / "tf" / "saved_model" / "1")!r})
        out = m.signatures["fill_mask"](input_ids=tf.constant({ids.tolist()}, tf.int64),
                                        attention_mask=tf.constant({mask.tolist()}, tf.int64),
                                        mask_positions=tf.constant({rows.tolist()}, tf.int64))
        assert not any(m.startswith(("encoderkit", "torch")) for m in sys.modules)
        assert "keras" not in type(m).__module__
        print(json.dumps(out["logits"].numpy().tolist()))
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                       env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr[-2000:]
    got = np.array(json.loads(p.stdout.strip().splitlines()[-1]))
    assert np.abs(got - want).max() < 1e-4


def test_saved_model_cli_lists_signatures(tiny_converted):
    import shutil

    cli = shutil.which("saved_model_cli", path=str(__import__("pathlib").Path(sys.executable).parent))
    if cli is None:
        pytest.skip("saved_model_cli not on PATH of this environment")
    p = subprocess.run([cli, "show", "--dir", str(tiny_converted / "tf" / "saved_model" / "1"), "--all"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-1000:]
    for sig in ("serving_default", "fill_mask", "hidden_states", "attentions"):
        assert f"signature_def['{sig}']" in p.stdout


def test_flax_msgpack_roundtrip_is_bit_identical(tiny_converted, tiny_roberta):
    from flax import serialization

    from encoderkit.backends.flax.model import load_params, model_tree
    from encoderkit.storage.mapping import flatten

    ck = load_checkpoint(tiny_roberta)
    params = flatten(load_params(tiny_converted / "flax" / "flax_model.msgpack", ck.spec))
    want = map_state(ck.state, ck.spec, model_tree(ck.spec))
    assert set(params) == set(want)
    assert "roberta/encoder/layer/0/attention/self/query/kernel" in params and "lm_head/bias" in params
    for k in want:
        assert params[k].dtype == np.float32 and np.array_equal(params[k], want[k]), k
    raw = serialization.msgpack_restore((tiny_converted / "flax" / "flax_model.msgpack").read_bytes())
    assert set(raw) == {"roberta", "lm_head"}  # Hugging Face's FlaxRobertaForMaskedLM top level


def test_flax_wrong_tree_or_shape_is_typed_error(tiny_converted, tmp_path, tiny_roberta):
    import shutil

    from flax import serialization

    from encoderkit.backends.flax.runtime import FlaxRuntime

    d = tmp_path / "flax"
    shutil.copytree(tiny_converted / "flax", d)
    f = d / "flax_model.msgpack"
    tree = serialization.msgpack_restore(f.read_bytes())
    tree["lm_head"]["bias"] = np.zeros(7, np.float32)
    f.write_bytes(serialization.msgpack_serialize(tree))
    with pytest.raises(ArtifactError, match=r"lm_head/bias has shape \(7,\)"):
        FlaxRuntime.load(d)
    del tree["lm_head"]["bias"]
    f.write_bytes(serialization.msgpack_serialize(tree))
    with pytest.raises(ArtifactError, match="parameter lm_head/bias is missing"):
        FlaxRuntime.load(d)
    f.write_bytes(b"\xc1garbage")
    with pytest.raises(ArtifactError, match="not a Flax msgpack file"):
        FlaxRuntime.load(d)


def test_flax_compilations_bounded_by_buckets(tiny_converted):
    from encoderkit.backends.flax.runtime import FlaxRuntime

    rt = FlaxRuntime.load(tiny_converted / "flax", max_tokens=512)
    rng = np.random.default_rng(0)
    words = "the river flows through a quiet valley under grey clouds near the old town".split()
    texts = [" ".join(rng.choice(words, size=int(n))) + " <mask>." for n in rng.integers(1, 60, size=100)]
    seen = []
    real = rt._run

    def spy(params, ids, mask, types, what):  # token types: an input of every call (zeros here)
        seen.append((ids.shape, what))
        return real(params, ids, mask, types, what)

    rt._run = spy
    rt.fill_mask(texts)
    rt.embed(texts)
    # every encoder call ran at a bucket shape: lengths from the documented steps, batches full or
    # a power of two below full
    shapes = set(rt.shape_buckets())
    assert {s for s, _ in seen} <= shapes, sorted({s for s, _ in seen} - shapes)
    assert all(b * t <= 512 or b == 1 for (b, t), _ in seen)  # planned in padded tokens
    # a batch short of its bucket runs as bucket-sized pieces rather than wasting over 1/8 in padding
    assert rt.full_batch(20) == 25  # buckets 1, 2, 4, 8, 16, 25
    assert rt.pieces(20, 20) == [16, 4] and rt.pieces(15, 20) == [15] and rt.pieces(24, 20) == [24]
    assert rt.pieces(13, 20) == [8, 4, 1] and rt.pieces(25, 20) == [25]
    from encoderkit.backends.flax.runtime import batch_buckets

    for b in range(1, 60):
        for t in (4, 20, 40, 144):
            p = rt.pieces(b, t)
            sizes = batch_buckets(rt.full_batch(t))
            padded = [next((x for x in sizes if x >= n), n) for n in p]
            assert sum(p) == b and all(x - n <= x / 8 or n > sizes[-1] for x, n in zip(padded, p)), (b, t, p)
    assert rt.buckets[:10] == [4, 8, 12, 16, 20, 24, 28, 32, 40, 48]
    from encoderkit.backends.flax.runtime import length_buckets

    b = length_buckets(512)  # roberta-large: padding waste bounded as the README says
    assert b[-1] == 512 and all(y / x <= 1.25 for x, y in zip(b, b[1:]) if x >= 16)
    assert all(y / x < 1.13 for x, y in zip(b, b[1:]) if x >= 64)
    head_buckets = int(np.log2(512)) + 1  # mask counts 1, 2, 4, ..., 512
    assert 0 < rt.compilations <= len(shapes) + head_buckets
    # one compilation per distinct shape seen (+ the head's), not one per batch
    assert rt.compilations <= len(set(seen)) + head_buckets < len(seen) + head_buckets
    before = rt.compilations
    rt.fill_mask(texts[::-1])  # same shapes again: nothing new to compile
    rt.embed(texts[::-1])
    assert rt.compilations == before
    rt.embed(texts[:50])  # a subset may add a smaller last batch, still only at bucket shapes
    assert {s for s, _ in seen} <= shapes
    assert rt.compilations <= len(set(seen)) + head_buckets


def test_tf_runs_with_onednn_and_warns_when_imported_without(tiny_converted):
    """encoderkit turns TF's oneDNN kernels on; a TF imported earlier without them gets a warning."""
    script = textwrap.dedent(f"""
        import os, sys, warnings
        if sys.argv[1] == "late":
            import tensorflow  # the user's own import, before encoderkit could ask for oneDNN
        import encoderkit
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            rt = encoderkit.load({str(tiny_converted)!r}, backend="tf")
        print(rt.onednn, any("TF_ENABLE_ONEDNN_OPTS=1" in str(x.message) for x in w))
    """)
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"}
    out = {}
    for order in ("ours", "late"):
        p = subprocess.run([sys.executable, "-c", script, order], capture_output=True, text=True, timeout=300, env=env)
        assert p.returncode == 0, p.stderr[-2000:]
        out[order] = p.stdout.split()[-2:]
    assert out["ours"] == ["True", "False"]
    # late: TF's own default decides (off on AMD, on for some Intel CPUs); warned exactly when off
    onednn, warned = out["late"]
    assert warned == str(onednn == "False"), out
