"""The torch backend against transformers itself: the fill-mask pipeline and RobertaModel."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import encoderkit
from encoderkit.core.errors import InputError

TEXTS_ONE = ["The capital of France is <mask>.", "She opened the <mask> and looked outside at the rain."]
TEXT_TWO = "The <mask> flows through the valley and into the <mask>."


@pytest.fixture(scope="module")
def rt(tiny_roberta):
    return encoderkit.load(tiny_roberta)


@pytest.fixture(scope="module")
def pipe(tiny_roberta):
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    return pipeline("fill-mask", model=AutoModelForMaskedLM.from_pretrained(tiny_roberta),
                    tokenizer=AutoTokenizer.from_pretrained(tiny_roberta))


def _same(ours, theirs, atol=1e-5):
    assert [p["token"] for p in ours] == [p["token"] for p in theirs]
    for a, b in zip(ours, theirs):
        assert abs(a["score"] - b["score"]) <= atol, (a, b)
        assert a["token_str"] == b["token_str"] and a["sequence"] == b["sequence"], (a, b)


def test_fill_mask_matches_pipeline_one_mask(rt, pipe):
    ours = rt.fill_mask(TEXTS_ONE, top_k=7)
    for text, got in zip(TEXTS_ONE, ours):
        assert len(got) == 1
        _same(got[0], pipe(text, top_k=7))


def test_fill_mask_matches_pipeline_two_masks(rt, pipe):
    (got,) = rt.fill_mask([TEXT_TWO], top_k=4)
    theirs = pipe(TEXT_TWO, top_k=4)
    assert len(got) == len(theirs) == 2
    for a, b in zip(got, theirs):
        _same(a, b)
    assert "<mask>" in got[0][0]["sequence"]  # the other mask stays, as in the pipeline


def test_fill_mask_targets_match_pipeline_without_renormalising(rt, pipe, recwarn):
    targets = [" many", "ree", " the"]
    (got,) = rt.fill_mask([TEXTS_ONE[0]], targets=targets)
    theirs = pipe(TEXTS_ONE[0], targets=targets)
    _same(got[0], theirs)
    assert sum(p["score"] for p in got[0]) < 0.5  # scores are probabilities over the whole vocab


def test_lm_head_runs_at_mask_positions_only(rt):
    seen = []
    hook = rt.head.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    try:
        rt.fill_mask([TEXT_TWO, TEXTS_ONE[1]])
    finally:
        hook.remove()
    assert seen == [(3, rt.spec.hidden_size)]  # 3 masks in one batch, not batch x seq rows


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
@pytest.mark.parametrize("layer", [0, 1, -1])
def test_embed_equals_pooling_of_roberta_model(tiny_roberta, rt, pooling, layer):
    from transformers import AutoModel, AutoTokenizer

    texts = ["A short one.", "A considerably longer sentence, so that the first one is padded in the batch."]
    tok = AutoTokenizer.from_pretrained(tiny_roberta)
    model = AutoModel.from_pretrained(tiny_roberta).eval()
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hs = model(**enc, output_hidden_states=True).hidden_states[layer].numpy()
    m = enc["attention_mask"].numpy()[:, :, None].astype(bool)
    want = {"mean": (hs * m).sum(1) / m.sum(1), "cls": hs[:, 0],
            "max": np.where(m, hs, -np.inf).max(1)}[pooling]
    got = rt.embed(texts, pooling=pooling, layer=layer)
    assert got.dtype == np.float32 and got.shape == (2, rt.spec.hidden_size)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_batched_equals_unbatched_and_order_is_restored(tiny_roberta):
    rng = np.random.default_rng(0)
    words = "the river flows through a quiet valley under grey clouds".split()
    texts = [" ".join(rng.choice(words, size=int(n))) + " <mask>." for n in rng.integers(1, 40, size=17)]
    big = encoderkit.load(tiny_roberta, max_tokens=200)
    one = encoderkit.load(tiny_roberta, max_tokens=1)  # every text alone
    np.testing.assert_allclose(big.embed(texts), np.concatenate([one.embed([t]) for t in texts]), atol=1e-5)
    batched = big.fill_mask(texts, top_k=3)
    for t, res in zip(texts, batched):
        (alone,) = one.fill_mask([t], top_k=3)
        assert [p["token"] for p in res[0]] == [p["token"] for p in alone[0]]
        assert res[0][0]["sequence"].startswith(t.split(" <mask>")[0])  # input order restored


@pytest.mark.parametrize("call,err,match", [
    (lambda rt: rt.fill_mask(["no mask here"]), InputError, r"texts\[0\]: the mask token <mask> is missing"),
    (lambda rt: rt.fill_mask(["ok <mask>", ""]), InputError, r"texts\[1\] is empty"),
    (lambda rt: rt.embed(["fine", 3]), TypeError, r"texts\[1\] is int"),
    (lambda rt: rt.embed("a single string"), TypeError, "list of strings"),
    (lambda rt: rt.embed(["word " * 200]), InputError, r"more than the model's 128; .*truncate"),
    (lambda rt: rt.embed(["x"], pooling="sum"), InputError, "pooling must be one of"),
    (lambda rt: rt.embed(["x"], layer=3), InputError, r"layer must be in 0\.\.2"),
    (lambda rt: rt.fill_mask(["a <mask>"], top_k=0), InputError, "top_k"),
    (lambda rt: rt.fill_mask(["<mask> " + "word " * 200], truncate=False), InputError, "truncate"),
    (lambda rt: rt.fill_mask(["word " * 200 + "<mask>"], truncate=True), InputError, "truncated away"),
])
def test_bad_input_is_a_typed_error(rt, call, err, match):
    with pytest.raises(err, match=match):
        call(rt)


def test_truncate_opt_in(rt, pipe):
    """--truncate equals an input truncated independently (transformers' own tokenizer with
    truncation=True at the model's length, specials kept) run through transformers' own model."""
    long_mask = "<mask> " + " ".join(f"word{i % 37} river" for i in range(300))
    long_plain = " ".join(f"token{i % 41} sea" for i in range(300))
    n = rt.spec.max_tokens_per_text
    tok, model = pipe.tokenizer, pipe.model
    with torch.no_grad():
        ids = tok(long_plain, truncation=True, max_length=n, return_tensors="pt")["input_ids"]
        assert ids.shape[1] == n and ids[0, -1] == tok.sep_token_id  # cut, the closing special kept
        assert rt.tokenizer.encode([long_plain], truncate=True)[0] == ids[0].tolist()
        hidden = model.base_model(ids).last_hidden_state[0].numpy()
        e = rt.embed([long_plain], truncate=True)
        assert e.shape == (1, rt.spec.hidden_size)
        np.testing.assert_allclose(e[0], hidden.mean(0), atol=1e-5)

        ids = tok(long_mask, truncation=True, max_length=n, return_tensors="pt")["input_ids"]
        logits = model(ids).logits[0, 1]  # the mask is the first token after <s>
        assert ids[0, 1] == tok.mask_token_id
        probs = torch.softmax(logits, -1)
        top = torch.topk(probs, 5)
    (res,) = rt.fill_mask([long_mask], top_k=5, truncate=True)
    assert len(res) == 1
    assert [p["token"] for p in res[0]] == top.indices.tolist()
    np.testing.assert_allclose([p["score"] for p in res[0]], top.values.numpy(), atol=1e-6)


def test_attentions_record_shape_tokens_and_rows_sum_to_one(rt):
    rec = rt.attentions("The quick brown fox.")
    ids = rt.tokenizer.encode(["The quick brown fox."])[0]
    n = len(ids)
    assert rec.probs.shape == (rt.spec.num_layers, rt.spec.num_heads, n, n) and rec.probs.dtype == np.float32
    np.testing.assert_allclose(rec.probs.sum(-1), 1.0, atol=1e-5)
    assert list(rec.token_ids) == ids and len(rec.tokens) == n and rec.backend == "torch"
    assert rec.tokens[0] == rt.tokenizer.id_to_token(ids[0]) and rec.special[0] and rec.special[-1]
    assert not rec.special[1:-1].any() and not rec.segment_ids.any()


def test_attentions_of_a_pair_mark_the_second_text(rt):
    rec = rt.attentions("The quick brown fox.", "It jumps.")
    ids_a = rt.tokenizer.encode(["The quick brown fox."])[0]
    n_b = len(rec.tokens) - len(ids_a)
    assert n_b > 2 and rec.probs.shape[-1] == len(rec.tokens)
    # RoBERTa's pair template <s> A </s></s> B </s>: specials belong to the text before them
    assert list(rec.segment_ids) == [0] * (len(ids_a) + 1) + [1] * (n_b - 1)
    assert rec.special.sum() == 4 and not rec.probs[..., rec.segment_ids == 1].sum() == 0


def test_plan_batches_respects_the_budget_in_padded_tokens():
    from encoderkit.core.batching import plan_batches

    lengths = [19, 17, 18, 11, 30, 9, 19, 12]
    # every text in exactly one batch, every batch within the budget in padded tokens
    for pad in (None, lambda t: -(-t // 8) * 8):
        batches = plan_batches(lengths, 100, pad)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        p = pad or (lambda t: t)
        for b in batches:
            assert len(b) * p(max(lengths[i] for i in b)) <= 100
    # longest first: 30 pads to 32, so three texts (96); then 18 pads to 24, so four (96); then one
    assert [len(b) for b in plan_batches(lengths, 100, lambda t: -(-t // 8) * 8)] == [3, 4, 1]
    assert [len(b) for b in plan_batches(lengths, 100)] == [3, 5]
    with pytest.raises(InputError):
        plan_batches(lengths, 0)


def _bf16_or_skip():
    from encoderkit.backends.torch.runtime import cpu_bf16_missing

    if why := cpu_bf16_missing():
        pytest.skip(why)


def test_bf16_runs_in_bf16_and_returns_float32_close_to_fp32(tiny_roberta, rt):
    _bf16_or_skip()
    bf = encoderkit.load(tiny_roberta, "torch-bf16", device="cpu")
    assert next(bf.model.parameters()).dtype == torch.bfloat16 and bf.head.decoder.weight.dtype == torch.bfloat16
    got, want = bf.embed(TEXTS_ONE), rt.embed(TEXTS_ONE)
    assert got.dtype == np.float32
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= encoderkit.backends.catalog.backend("torch-bf16").tolerance.min_cosine, cos
    top1 = lambda r: [masks[0][0]["token"] for masks in r.fill_mask(TEXTS_ONE)]  # noqa: E731
    assert top1(bf) == top1(rt)
    att = bf.attentions(TEXTS_ONE[0])
    assert att.probs.dtype == np.float32 and np.allclose(att.probs.sum(-1), 1, atol=1e-2)


def test_bf16_on_a_cpu_without_bf16_is_one_typed_line(tiny_roberta, monkeypatch):
    from encoderkit.backends.torch import runtime
    from encoderkit.core.errors import ResourceError, UnsupportedHardwareError

    monkeypatch.setattr(runtime, "cpu_bf16_missing", lambda: "this CPU has no bf16 instructions "
                        "(avx512_bf16/amx_bf16): use torch or onnx-int8")
    with pytest.raises(UnsupportedHardwareError, match=r"^this CPU has no bf16 instructions .*: use torch or onnx-int8$") as e:
        encoderkit.load(tiny_roberta, "torch-bf16", device="cpu")
    assert isinstance(e.value, ResourceError) and "\n" not in str(e.value)
    encoderkit.load(tiny_roberta, "torch", device="cpu")  # fp32 asks nothing of the CPU


def test_cpu_bf16_missing_reads_the_cpu_flags(monkeypatch, tmp_path):
    from encoderkit.backends.torch import runtime

    real = runtime.Path

    def fake(flags):
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(runtime, "Path", lambda p: real(tmp_path / "cpuinfo") if p == "/proc/cpuinfo" else real(p))

    fake("fpu sse avx2 avx512f avx512_bf16")
    assert runtime.cpu_bf16_missing() is None
    fake("fpu sse avx2 avx512f amx_bf16 amx_tile")
    assert runtime.cpu_bf16_missing() is None
    fake("fpu sse avx2 avx512f avx512bw")
    assert "no bf16 instructions" in runtime.cpu_bf16_missing()
