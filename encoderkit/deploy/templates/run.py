#!/usr/bin/env python3
"""Standalone runner of an encoderkit bundle: needs numpy, tokenizers and one inference engine
(onnxruntime for onnx/node/triton bundles, ai-edge-litert for tflite, tensorflow for tf-serving),
never encoderkit, torch or transformers.

    python run.py embed "a sentence" "another" [--pooling mean|cls|max] [--normalize] [--json]
    python run.py fill-mask "Paris is the <mask> of France." [--top-k 5] [--json]
    python run.py tokenize "a sentence"          # token ids, as JSON
    python run.py --self-test                   # the bundle's probes against its expected outputs

With --json the output has exactly the shape `encoderkit embed|fill-mask --json` prints. Every
file listed in bundle.json is checked by sha256 before anything is loaded; a changed file is
refused (exit 2). Errors caused by input print one line on stderr and exit 2.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
POOLINGS = ("mean", "cls", "max")


class BundleError(Exception):
    """An input or bundle problem: one line on stderr, exit 2."""


class SelfTestFailure(Exception):
    """A self-test probe missed its stored answer (exit 1). Raised explicitly, never by ``assert``:
    ``python -O`` strips asserts, and a self-test that cannot fail there would pass a broken bundle."""


def check(ok: bool, message: str) -> None:
    if not ok:
        raise SelfTestFailure(message)


# ----------------------------------------------------------------------------- the bundle
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def read_bundle(root: Path, verify: bool = True) -> dict:
    """bundle.json, after checking every file it lists by sha256."""
    try:
        bundle = json.loads((root / "bundle.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BundleError(f"{root / 'bundle.json'}: unreadable ({e})") from None
    if verify:
        for rel, meta in bundle["files"].items():
            p = root / rel
            if not p.is_file():
                raise BundleError(f"{rel}: listed in bundle.json but missing")
            if sha256_file(p) != meta["sha256"]:
                raise BundleError(f"{rel}: sha256 differs from bundle.json (corrupted or edited); refusing to load it")
    return bundle


# ----------------------------------------------------------------------------- tokenizer
class TextTokenizer:
    """The same input policy as encoderkit: specials added, empty texts and over-long texts refused
    unless truncation is asked for (then cut to max_length, specials kept)."""

    def __init__(self, path: Path, max_length: int):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(path))
        self.tok.no_truncation()
        self.tok.no_padding()
        self.trunc = Tokenizer.from_str(self.tok.to_str())
        self.trunc.enable_truncation(max_length)
        self.max_length = max_length

    def encode(self, texts: list[str], truncate: bool = False) -> list[list[int]]:
        if not texts:
            raise BundleError("no texts given")
        for i, t in enumerate(texts):
            if not t.strip():
                raise BundleError(f"texts[{i}] is empty")
        ids = [e.ids for e in self.tok.encode_batch(texts)]
        for i, x in enumerate(ids):
            if len(x) > self.max_length:
                if not truncate:
                    raise BundleError(f"texts[{i}] has {len(x)} tokens, more than the bundle's {self.max_length}; "
                                      "shorten it or pass --truncate")
                ids[i] = self.trunc.encode(texts[i]).ids
        return ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)


# ----------------------------------------------------------------------------- engines
class OrtEngine:
    """onnxruntime over the bundle's encoder (+ in-graph pooling) and MLM head graphs."""

    head_takes_hidden = True  # the head graph maps gathered hidden rows to logits

    def __init__(self, root: Path, bundle: dict, threads: int | None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        graphs = bundle["graphs"]
        self.encoder = ort.InferenceSession(str(root / graphs["encoder"]), opts, providers=["CPUExecutionProvider"])
        self.head = (ort.InferenceSession(str(root / graphs["head"]), opts, providers=["CPUExecutionProvider"])
                     if graphs.get("head") else None)
        self.outputs = [o.name for o in self.encoder.get_outputs()]
        # BERT-family graphs also take token types (single texts here: all zero)
        self.typed = "token_type_ids" in {i.name for i in self.encoder.get_inputs()}

    def run(self, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self.typed:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return dict(zip(self.outputs, self.encoder.run(None, feeds)))

    def mask_logits(self, hidden_rows: np.ndarray, ids, mask, rows) -> np.ndarray:
        return self.head.run(None, {"hidden": np.ascontiguousarray(hidden_rows, dtype=np.float32)})[0]


class TFLiteEngine:
    """ai-edge-litert's interpreter over the bundle's .tflite (dynamic sequence length: the
    interpreter resizes its inputs to each batch's shape)."""

    head_takes_hidden = False  # the fill_mask signature runs the encoder itself

    def __init__(self, root: Path, bundle: dict, threads: int | None):
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=str(root / bundle["graphs"]["encoder"]), num_threads=threads or None)
        self.encode = self.interp.get_signature_runner("serving_default")
        self.fill = (self.interp.get_signature_runner("fill_mask")
                     if "fill_mask" in self.interp.get_signature_list() else None)
        self.head = self.fill
        self.typed = "token_type_ids" in self.encode.get_input_details()

    def _types(self, ids) -> dict:
        return {"token_type_ids": np.zeros_like(ids)} if self.typed else {}

    def run(self, ids, mask) -> dict[str, np.ndarray]:
        return {"last_hidden_state": self.encode(input_ids=ids, attention_mask=mask,
                                                 **self._types(ids))["last_hidden_state"]}

    def mask_logits(self, hidden_rows, ids, mask, rows) -> np.ndarray:
        return self.fill(input_ids=ids, attention_mask=mask, mask_positions=rows.astype(np.int64),
                         **self._types(ids))["logits"]


class TFEngine:
    """TensorFlow over the SavedModel a tf-serving bundle holds (its serving signatures)."""

    head_takes_hidden = False

    def __init__(self, root: Path, bundle: dict, threads: int | None):
        import tensorflow as tf

        self.tf = tf
        self.sig = tf.saved_model.load(str(root / bundle["graphs"]["encoder"])).signatures
        self.head = self.sig["fill_mask"] if "fill_mask" in self.sig else None
        self.typed = "token_type_ids" in self.sig["serving_default"].structured_input_signature[1]

    def _types(self, ids) -> dict:
        return {"token_type_ids": self.tf.constant(np.zeros_like(ids))} if self.typed else {}

    def run(self, ids, mask) -> dict[str, np.ndarray]:
        tf = self.tf
        out = self.sig["serving_default"](input_ids=tf.constant(ids), attention_mask=tf.constant(mask),
                                          **self._types(ids))
        return {"last_hidden_state": out["last_hidden_state"].numpy()}

    def mask_logits(self, hidden_rows, ids, mask, rows) -> np.ndarray:
        tf = self.tf
        return self.head(input_ids=tf.constant(ids), attention_mask=tf.constant(mask),
                         mask_positions=tf.constant(rows.astype(np.int64)), **self._types(ids))["logits"].numpy()


ENGINES = {"onnxruntime": OrtEngine, "litert": TFLiteEngine, "tensorflow": TFEngine}


# ----------------------------------------------------------------------------- the model
class Bundle:
    def __init__(self, root: Path = HERE, *, verify: bool = True, threads: int | None = None):
        t0 = time.perf_counter()
        self.root = root
        self.info = read_bundle(root, verify)
        self.max_length = self.info["max_length"]
        self.tokenizer = TextTokenizer(root / self.info["tokenizer"], self.max_length)
        self.engine = ENGINES[self.info["engine"]](root, self.info, threads)
        self.load_seconds = time.perf_counter() - t0

    def _pad(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        n = max(len(x) for x in ids)
        input_ids = np.full((len(ids), n), self.info["pad_token_id"], dtype=np.int64)
        mask = np.zeros((len(ids), n), dtype=np.int64)
        for i, x in enumerate(ids):
            input_ids[i, :len(x)] = x
            mask[i, :len(x)] = 1
        return input_ids, mask

    def _batches(self, ids: list[list[int]], max_tokens: int = 1024):
        """Texts sorted by length into padded batches of at most max_tokens (as encoderkit does)."""
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        batch: list[int] = []
        for i in order:
            if batch and (len(batch) + 1) * len(ids[i]) > max_tokens:
                yield batch, *self._pad([ids[j] for j in batch])
                batch = []
            batch.append(i)
        if batch:
            yield batch, *self._pad([ids[j] for j in batch])

    def embed(self, texts: list[str], pooling: str | None = None, normalize: bool | None = None,
              truncate: bool = False) -> np.ndarray:
        pooled = self.info["pooling"]
        pooling = pooled["default"] if pooling is None else pooling
        normalize = pooled["normalize"] if normalize is None else normalize
        if pooling not in POOLINGS:
            raise BundleError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        in_graph = pooled["in_graph"] and pooling == pooled["default"] and normalize == pooled["normalize"]
        ids = self.tokenizer.encode(texts, truncate)
        out = np.zeros((len(ids), self.info["model"]["hidden_size"]), dtype=np.float32)
        for batch, input_ids, mask in self._batches(ids):
            res = self.engine.run(input_ids, mask)
            if in_graph:  # pooling (and normalisation) already done by the graph
                out[batch] = res["sentence_embedding"]
                continue
            out[batch] = pool(res["last_hidden_state"].astype(np.float32), mask, pooling)
        if normalize and not in_graph:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def mask_probs(self, input_ids, mask) -> tuple[np.ndarray, np.ndarray]:
        rows = np.argwhere(input_ids == self.info["mask_token_id"])
        rows_hidden = None
        if self.engine.head_takes_hidden:
            rows_hidden = self.engine.run(input_ids, mask)["last_hidden_state"][rows[:, 0], rows[:, 1]]
        logits = self.engine.mask_logits(rows_hidden, input_ids, mask, rows).astype(np.float32)
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return rows, e / e.sum(axis=-1, keepdims=True)

    def fill_mask(self, texts: list[str], top_k: int = 5, truncate: bool = False) -> list:
        """As transformers' fill-mask pipeline and `encoderkit fill-mask`: per text, per mask, top-k
        {token, token_str, score, sequence}."""
        if self.engine.head is None:
            raise BundleError("this bundle has no masked-LM head (package it with --tasks fill-mask from a "
                              "*ForMaskedLM model)")
        if top_k < 1:
            raise BundleError(f"top_k must be a positive integer, got {top_k}")
        mask_id, pad = self.info["mask_token_id"], self.info["pad_token_id"]
        k = min(top_k, self.info["model"]["vocab_size"])
        ids = self.tokenizer.encode(texts, truncate)
        for i, seq in enumerate(ids):
            if mask_id not in seq:
                raise BundleError(f"texts[{i}]: the mask token {self.info['mask_token']} is missing; write "
                                  f"{self.info['mask_token']} where a word should be predicted")
        results: list = [None] * len(ids)
        for batch, input_ids, mask in self._batches(ids):
            rows, probs = self.mask_probs(input_ids, mask)
            for r, (b, pos) in enumerate(rows):
                i = batch[b]
                seq = ids[i]
                single = seq.count(mask_id) == 1
                p = probs[r]
                top = np.argpartition(-p, k - 1)[:k] if k < p.shape[0] else np.arange(p.shape[0])
                top = top[np.argsort(-p[top], kind="stable")]
                preds = []
                for j in top:
                    filled = np.array(seq)
                    filled[pos] = j
                    filled = filled[filled != pad]
                    preds.append({"token": int(j), "token_str": self.tokenizer.decode([j], False),
                                  "score": float(p[j]), "sequence": self.tokenizer.decode(filled, single)})
                results[i] = (results[i] or []) + [preds]
        return results


def pool(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    if pooling == "cls":
        return hidden[:, 0]
    m = mask[:, :, None].astype(bool)
    if pooling == "max":
        return np.where(m, hidden, -np.inf).max(axis=1)
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1)


# ----------------------------------------------------------------------------- self-test
def self_test(b: Bundle) -> list[str]:
    """Run the probes stored at package time; return report lines. Raises SelfTestFailure on a miss."""
    probes, tol = b.info["probes"], b.info["probes"]["tolerance"]
    lines = []
    for p in probes["embed"] + probes.get("fill_mask", []):
        got = b.tokenizer.encode([p["text"]], p["truncate"])[0]
        check(got == p["ids"], f"token ids differ from encoderkit's for {p['text'][:40]!r}: {got[:12]} vs {p['ids'][:12]}")
    lines.append(f"token ids: identical on {len(probes['embed']) + len(probes.get('fill_mask', []))} probes")
    worst, cos = 0.0, 1.0
    for p in probes["embed"]:
        e = b.embed([p["text"]], truncate=p["truncate"])[0]
        ref = np.asarray(p["embedding"], dtype=np.float32)
        worst = max(worst, float(np.abs(e - ref).max()))
        cos = min(cos, float(e @ ref / max(np.linalg.norm(e) * np.linalg.norm(ref), 1e-12)))
    if tol["kind"] == "atol":
        check(worst <= tol["atol"], f"embed: max |diff| {worst:.3g} > {tol['atol']:g} against the {probes['reference']} reference")
        lines.append(f"embed: {len(probes['embed'])} probes, max |diff| {worst:.2e} <= {tol['atol']:g} vs {probes['reference']}")
    else:
        check(cos >= tol["cosine"], f"embed: min cosine {cos:.4f} < {tol['cosine']} against the {probes['reference']} reference")
        lines.append(f"embed: {len(probes['embed'])} probes, min cosine {cos:.4f} >= {tol['cosine']} vs {probes['reference']}")
    if probes.get("fill_mask"):
        worst, agree, n = 0.0, 0, 0
        for p in probes["fill_mask"]:
            input_ids, mask = b._pad([p["ids"]])
            _, probs = b.mask_probs(input_ids, mask)
            for row, top in zip(probs, p["top"]):
                tokens = [t["token"] for t in top]
                worst = max(worst, float(np.abs(row[tokens] - [t["score"] for t in top]).max()))
                agree += int(np.argmax(row) == tokens[0])
                n += 1
        if tol["kind"] == "atol":
            check(worst <= tol["atol"], f"fill-mask: max |score diff| {worst:.3g} > {tol['atol']:g}")
            lines.append(f"fill-mask: {n} masks, max |score diff| of the reference top-5 {worst:.2e} <= {tol['atol']:g}")
        else:
            check(agree / n >= tol["top1"], f"fill-mask: top-1 agreement {agree / n:.3f} < {tol['top1']}")
            lines.append(f"fill-mask: {n} masks, top-1 agreement {agree / n:.3f} >= {tol['top1']}")
    return lines


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MB. Linux: VmHWM (ru_maxrss would include the
    memory of the process that started us, which Linux carries across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 / (1024 if sys.platform == "darwin" else 1)  # macOS reports bytes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=HERE, help="bundle directory (default: this file's)")
    p.add_argument("--self-test", action="store_true", help="check the bundle against its stored probe outputs")
    p.add_argument("--measure", action="store_true", help="with --self-test: then print load time, latency, peak RSS as a JSON line")
    p.add_argument("--threads", type=int, default=None)
    sub = p.add_subparsers(dest="command")
    for name in ("embed", "fill-mask", "tokenize"):
        s = sub.add_parser(name)
        s.add_argument("texts", nargs="+", metavar="TEXT")
        s.add_argument("--truncate", action="store_true", help="cut texts longer than the bundle's max length")
        s.add_argument("--json", action="store_true")
        if name == "embed":
            s.add_argument("--pooling", choices=POOLINGS, default=None, help="default: the bundle's")
            s.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None)
        if name == "fill-mask":
            s.add_argument("--top-k", type=int, default=5)
    a = p.parse_args(argv)
    if not a.self_test and not a.command:
        p.error("give a command (embed, fill-mask, tokenize) or --self-test")
    try:
        try:
            b = Bundle(a.bundle, threads=a.threads)
        except ImportError as e:  # the engine or tokenizers is not installed
            raise BundleError(f"{e.name or e} is not installed: pip install -r requirements.txt") from None
        if a.self_test:
            try:
                lines = self_test(b)
            except SelfTestFailure as e:
                print(f"self-test FAILED: {e}", file=sys.stderr)
                return 1
            print("\n".join(lines + ["self-test passed"]))
            if a.measure:  # after the self-test ran: the median of 5 calls on one short text
                text = b.info["probes"]["embed"][0]["text"]
                times = []
                for _ in range(5):
                    t = time.perf_counter()
                    b.embed([text])
                    times.append(time.perf_counter() - t)
                print(json.dumps({"load_seconds": round(b.load_seconds, 4),
                                  "embed_one_text_seconds": round(sorted(times)[2], 5),
                                  "peak_rss_mb": peak_rss_mb()}))
            if not a.command:
                return 0
        if a.command == "tokenize":
            ids = b.tokenizer.encode(a.texts, a.truncate)
            print(json.dumps(ids))
        elif a.command == "embed":
            emb = b.embed(a.texts, a.pooling, a.normalize, a.truncate)
            if a.json:
                print(json.dumps(emb.tolist()))
            else:
                for text, e in zip(a.texts, emb):
                    head = " ".join(f"{x:+.4f}" for x in e[:6])
                    print(f"[{head} ...] dim {e.shape[0]} norm {float((e ** 2).sum() ** 0.5):.4f}  {text}")
        elif a.command == "fill-mask":
            results = b.fill_mask(a.texts, a.top_k, a.truncate)
            if a.json:
                print(json.dumps(results, ensure_ascii=False))
            else:
                for text, per_mask in zip(a.texts, results):
                    print(text)
                    for m, preds in enumerate(per_mask):
                        if len(per_mask) > 1:
                            print(f"  mask {m + 1}:")
                        for q in preds:
                            print(f"  {q['score']:.4f}  {q['token_str']!r:<16} {q['sequence']}")
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
