#!/usr/bin/env python3
"""Standalone runner of an encoderkit bundle: needs numpy, tokenizers and one inference engine
(onnxruntime for onnx/node/triton bundles, ai-edge-litert for tflite, tensorflow for tf-serving),
never encoderkit, torch or transformers.

    python run.py embed "a sentence" "another" [--pooling mean|cls|max] [--normalize] [--json]
    python run.py fill-mask "Paris is the <mask> of France." [--top-k 5] [--json]
    python run.py classify "a sentence" [--top-k 1] [--json]   # bundles packaged with classify
    python run.py ner "Ada Lovelace met Charles Babbage." [--aggregation none|simple|first|average|max] [--json]
    python run.py qa --question "Who?" --context "A context." [--top-k 1] [--max-answer-len 15]
                     [--doc-stride S] [--max-seq-len N] [--handle-impossible] [--json]   # with ner / qa
    python run.py tokenize "a sentence"          # token ids, as JSON
    python run.py --self-test                   # the bundle's probes against its expected outputs

With --json the output has exactly the shape `encoderkit embed|fill-mask|classify|ner|qa --json` prints. Every
file listed in bundle.json is checked by sha256 before anything is loaded; a changed file is
refused (exit 2). The bundle follows the rules of an encoderkit model directory: every file in it
is listed in bundle.json, listed paths are plain and inside it, no symbolic link anywhere, and
what is loaded are the very bytes that were hashed (never a second read by path). Only what a
user adds to install the runner is not part of the bundle and is never read: NOT_BUNDLE below.
Errors caused by input or by the bundle print one line on stderr and exit 2; a self-test that
misses its probes prints one line and exits 1. No check is an `assert` (they hold under python -O).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath

import numpy as np

HERE = Path(__file__).resolve().parent
POOLINGS = ("mean", "cls", "max")


class BundleError(Exception):
    """An input or bundle problem: one line on stderr, exit 2."""


class SelfTestFailed(Exception):
    """The bundle's answers miss its stored probe outputs: one line on stderr, exit 1."""


def check(condition: bool, message: str) -> None:
    """The self-test's checks (an `assert` would vanish under python -O)."""
    if not condition:
        raise SelfTestFailed(message)


# ----------------------------------------------------------------------------- the bundle
BUNDLE_FILE = "bundle.json"
BUNDLE_MAX_BYTES = 64 << 20  # probes and a file table: megabytes at most
# What a user adds beside the bundle's files to run it (a venv for requirements.txt, npm's
# node_modules and lock file for run.mjs, Python's cache) and the packager's temp-dir marker: not
# part of the bundle, never walked (a venv holds symlinks), and nothing the bundle loads can come
# from there (every graph and the tokenizer must be listed files).
NOT_BUNDLE = {".venv", "node_modules", "package-lock.json", "__pycache__", ".encoderkit-owner"}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def plain_relative(rel: object) -> bool:
    """A relative POSIX path with no '', '.', '..' part, no backslash or NUL, not absolute."""
    return (isinstance(rel, str) and bool(rel) and "\\" not in rel and "\0" not in rel
            and not PurePosixPath(rel).is_absolute() and not os.path.isabs(rel)
            and all(part not in ("", ".", "..") for part in rel.split("/")))


def bundle_files(root: Path) -> list[str]:
    """Every regular file under ``root`` (relative POSIX paths) but bundle.json and NOT_BUNDLE.

    Raises:
        BundleError: a symbolic link, or a FIFO/device/socket, anywhere in the bundle.
    """
    out: list[str] = []
    stack = [(root, "")]
    while stack:
        d, prefix = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                rel = prefix + e.name
                if not prefix and (e.name in NOT_BUNDLE or e.name == BUNDLE_FILE):
                    continue
                if e.is_symlink():
                    raise BundleError(f"{rel}: a symbolic link inside the bundle; refusing to follow it")
                if e.is_dir(follow_symlinks=False):
                    stack.append((Path(e.path), rel + "/"))
                elif e.is_file(follow_symlinks=False):
                    out.append(rel)
                else:
                    raise BundleError(f"{rel}: not a regular file (FIFO, device or socket); refusing to read it")
    return sorted(out)


def read_bundle(root: Path, verify: bool = True) -> dict:
    """bundle.json (within a size bound, its schema checked), after checking that the bundle's
    files are exactly the ones it lists (sizes, and with ``verify`` their sha256)."""
    path = root / BUNDLE_FILE
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
            raise BundleError(f"{path}: not a regular file; refusing to read it")
        if st.st_size > BUNDLE_MAX_BYTES:
            raise BundleError(f"{path}: {st.st_size} bytes, more than a bundle.json can be ({BUNDLE_MAX_BYTES})")
        with open(path, "rb") as f:
            raw = f.read(BUNDLE_MAX_BYTES + 1)
        if len(raw) > BUNDLE_MAX_BYTES:
            raise BundleError(f"{path}: more than {BUNDLE_MAX_BYTES} bytes")
        bundle = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise BundleError(f"{path}: unreadable ({type(e).__name__}: {str(e)[:200]})") from None
    table = check_schema(bundle)
    present = bundle_files(root)
    unlisted = [f for f in present if f not in table]
    if unlisted:
        raise BundleError(f"{unlisted[0]}: not listed in bundle.json (added after packaging?); refusing to load "
                          "a bundle with unlisted files")
    for rel, meta in table.items():
        p = root / rel
        if rel not in present:
            raise BundleError(f"{rel}: listed in bundle.json but missing")
        if p.stat().st_size != meta["bytes"]:  # before hashing: never read more than bundle.json says
            raise BundleError(f"{rel}: {p.stat().st_size} bytes, bundle.json says {meta['bytes']} (corrupted or "
                              "edited); refusing to load it")
        if verify and rel not in bundle_loads(bundle) and sha256_file(p) != meta["sha256"]:
            raise BundleError(f"{rel}: sha256 differs from bundle.json (corrupted or edited); refusing to load it")
    return bundle


def _int(v: object, lo: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def check_schema(bundle: object) -> dict:
    """The fields the runner reads, with their types; returns the file table.

    Raises:
        BundleError: naming the first field that is not what `encoderkit package` writes.
    """
    def bad(what: str) -> BundleError:
        return BundleError(f"bundle.json: {what}; re-package with `encoderkit package`")

    if not isinstance(bundle, dict):
        raise bad("not a JSON object")
    table = bundle.get("files")
    if not isinstance(table, dict):
        raise bad("'files' is missing or not a mapping of path -> {sha256, bytes}")
    for rel, meta in table.items():
        if not plain_relative(rel):
            raise bad(f"file {rel!r} is not a plain relative path inside the bundle")
        if rel.split("/")[0] in NOT_BUNDLE or rel == BUNDLE_FILE:
            raise bad(f"file {rel!r} is not a bundle file")
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) \
                or not _SHA256.fullmatch(meta["sha256"]) or not _int(meta.get("bytes")):
            raise bad(f"file {rel!r} has no valid 'sha256' and 'bytes'")
    if bundle.get("engine") not in ENGINES:
        raise bad(f"'engine' is not one of {', '.join(ENGINES)}")
    if not _int(bundle.get("max_length"), 3):
        raise bad("'max_length' is not an integer >= 3")
    model = bundle.get("model")
    if not isinstance(model, dict) or not _int(model.get("hidden_size"), 1) or not _int(model.get("vocab_size"), 1):
        raise bad("'model' has no positive 'hidden_size' and 'vocab_size'")
    for key in ("pad_token_id", "mask_token_id"):
        if not _int(bundle.get(key)) or bundle[key] >= model["vocab_size"]:
            raise bad(f"'{key}' is not a token id of the vocabulary")
    if not isinstance(bundle.get("mask_token"), str) or not bundle["mask_token"]:
        raise bad("'mask_token' is not a string")
    pooling = bundle.get("pooling")
    if not isinstance(pooling, dict) or pooling.get("default") not in POOLINGS \
            or not isinstance(pooling.get("normalize"), bool) or not isinstance(pooling.get("in_graph"), bool):
        raise bad("'pooling' is not {default, normalize, in_graph}")
    if not isinstance(bundle.get("tokenizer"), str) or bundle["tokenizer"] not in table:
        raise bad("'tokenizer' names no file the bundle lists")
    graphs = bundle.get("graphs")
    if not isinstance(graphs, dict) or not isinstance(graphs.get("encoder"), str):
        raise bad("'graphs' has no 'encoder'")
    for key, rel in graphs.items():
        if rel is None and key != "encoder":
            continue
        listed = isinstance(rel, str) and (rel in table or (
            bundle["engine"] == "tensorflow" and plain_relative(rel) and any(f.startswith(rel + "/") for f in table)))
        if not listed:
            raise bad(f"graph {key!r} ({rel!r}) names no file the bundle lists")
    return table


def bundle_loads(bundle: dict) -> set[str]:
    """The listed files the runner loads (hashed when they are read, not before)."""
    graphs = [g for g in bundle["graphs"].values() if isinstance(g, str)]
    out = {bundle["tokenizer"]}
    for rel in bundle["files"]:
        if rel in graphs or any(rel.startswith(g + "/") for g in graphs):
            out.add(rel)
        elif any(rel == g + ".data" for g in graphs):  # an ONNX graph's external weights
            out.add(rel)
    return out


class BundleFiles:
    """The listed files the runner loads: each read once, its size and sha256 checked on those
    very bytes, which are then what the engine and the tokenizer get (never a second open by path:
    a file swapped after the check cannot be loaded)."""

    def __init__(self, root: Path, bundle: dict, verify: bool = True):
        self.root = root
        self.table = bundle["files"]
        self.verify = verify

    def read(self, rel: str) -> bytes:
        meta = self.table.get(rel)
        if meta is None:
            raise BundleError(f"{rel}: not listed in bundle.json; refusing to load it")
        path = self.root / rel
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as e:
            raise BundleError(f"{rel}: cannot be opened ({e.strerror})") from None
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise BundleError(f"{rel}: not a regular file; refusing to read it")
            data = f.read(meta["bytes"] + 1)
        if len(data) != meta["bytes"]:
            raise BundleError(f"{rel}: {len(data)} bytes, bundle.json says {meta['bytes']} (corrupted or edited); "
                              "refusing to load it")
        if self.verify and hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise BundleError(f"{rel}: sha256 differs from bundle.json (corrupted or edited); refusing to load it")
        return data

    def under(self, rel: str) -> list[str]:
        """The listed files inside directory ``rel`` (a SavedModel)."""
        return sorted(f for f in self.table if f.startswith(rel + "/"))


# ----------------------------------------------------------------------------- tokenizer
class TextTokenizer:
    """The same input policy as encoderkit: specials added, empty texts and over-long texts refused
    unless truncation is asked for (then cut to max_length, specials kept)."""

    def __init__(self, data: bytes, max_length: int, name: str = "tokenizer.json"):
        from tokenizers import Tokenizer

        try:
            self.tok = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exception on a bad file
            raise BundleError(f"{name}: not a valid tokenizer.json ({type(e).__name__}: {str(e)[:200]})") from None
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
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates, e.g. from undecodable bytes in argv
                raise BundleError(f"texts[{i}] is not valid Unicode (lone surrogates: undecodable bytes?); "
                                  "pass UTF-8 text") from None
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

    def __init__(self, files: BundleFiles, bundle: dict, threads: int | None):
        graphs = bundle["graphs"]
        self.encoder = self.session(files, graphs["encoder"], threads)
        self.head = self.session(files, graphs["head"], threads) if graphs.get("head") else None
        self.classifier = self.session(files, graphs["classifier"], threads) if graphs.get("classifier") else None
        self.outputs = [o.name for o in self.encoder.get_outputs()]
        # BERT-family graphs also take token types (single texts here: all zero)
        self.typed = "token_type_ids" in {i.name for i in self.encoder.get_inputs()}

    @staticmethod
    def session(files: BundleFiles, rel: str, threads: int | None):
        """An InferenceSession over the verified bytes of graph ``rel`` (and of ``rel``.data, its
        external weights when it has them, handed over in memory)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        model = files.read(rel)
        external = rel + ".data"
        if external in files.table:
            data = np.frombuffer(files.read(external), dtype=np.uint8)
            if not hasattr(opts, "add_external_initializers_from_files_in_memory"):
                raise BundleError(f"{rel} keeps its weights in {external}; this onnxruntime cannot take them from "
                                  "memory: pip install -U onnxruntime")
            opts.add_external_initializers_from_files_in_memory([PurePosixPath(external).name], [data], [data.size])
        try:
            return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises several types for a graph it cannot load
            raise BundleError(f"{rel}: ONNX Runtime cannot load it ({type(e).__name__}: {str(e)[:200]})") from None

    def run(self, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self.typed:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return dict(zip(self.outputs, self.encoder.run(None, feeds)))

    def mask_logits(self, hidden_rows: np.ndarray, ids, mask, rows) -> np.ndarray:
        return self.head.run(None, {"hidden": np.ascontiguousarray(hidden_rows, dtype=np.float32)})[0]

    def class_logits(self, ids, mask) -> np.ndarray:
        first = self.run(ids, mask)["last_hidden_state"][:, 0]  # the [CLS] / <s> row of each text
        return self.classifier.run(None, {"hidden": np.ascontiguousarray(first, dtype=np.float32)})[0]


class TFLiteEngine:
    """ai-edge-litert's interpreter over the bundle's .tflite (dynamic sequence length: the
    interpreter resizes its inputs to each batch's shape)."""

    head_takes_hidden = False  # the fill_mask signature runs the encoder itself
    classifier = None  # no classification head in TFLite exports yet

    def __init__(self, files: BundleFiles, bundle: dict, threads: int | None):
        from ai_edge_litert.interpreter import Interpreter

        rel = bundle["graphs"]["encoder"]
        self.content = files.read(rel)  # the verified bytes; the interpreter keeps using this buffer
        try:
            self.interp = Interpreter(model_content=self.content, num_threads=threads or None)
        except (ValueError, RuntimeError) as e:
            raise BundleError(f"{rel}: LiteRT cannot load it ({str(e)[:200]})") from None
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
    classifier = None  # no classification head in the SavedModel's signatures yet

    def __init__(self, files: BundleFiles, bundle: dict, threads: int | None):
        import tensorflow as tf

        self.tf = tf
        rel = bundle["graphs"]["encoder"]
        # TensorFlow loads a SavedModel from a directory only: the verified bytes are written into a
        # private temporary one (nobody else can swap a file there), loaded, and removed
        with tempfile.TemporaryDirectory(prefix="bundle-savedmodel-") as td:
            for f in files.under(rel):
                dst = Path(td) / f[len(rel) + 1:]
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(files.read(f))
            try:
                self.model = tf.saved_model.load(td)
            except Exception as e:  # noqa: BLE001 - TF raises several types for a SavedModel it cannot load
                raise BundleError(f"{rel}: TensorFlow cannot load it ({type(e).__name__}: {str(e)[:200]})") from None
        self.sig = self.model.signatures
        if "serving_default" not in self.sig:
            raise BundleError(f"{rel}: the SavedModel has no serving_default signature")
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


# a web bundle's graphs (onnxruntime-web in the browser) run on onnxruntime here
ENGINES = {"onnxruntime": OrtEngine, "onnxruntime-web": OrtEngine, "litert": TFLiteEngine, "tensorflow": TFEngine}


# ----------------------------------------------------------------------------- the model
class Bundle:
    def __init__(self, root: Path = HERE, *, verify: bool = True, threads: int | None = None):
        t0 = time.perf_counter()
        self.root = root
        self.info = read_bundle(root, verify)
        self.max_length = self.info["max_length"]
        files = BundleFiles(root, self.info, verify)
        self.tokenizer = TextTokenizer(files.read(self.info["tokenizer"]), self.max_length, self.info["tokenizer"])
        self.engine = ENGINES[self.info["engine"]](files, self.info, threads)
        self.load_seconds = time.perf_counter() - t0

    def run(self, input_ids: np.ndarray, mask: np.ndarray, output: str = "last_hidden_state") -> np.ndarray:
        """The encoder's ``output`` on one padded batch, its shape checked against bundle.json.

        Raises:
            BundleError: the engine fails on the batch, or its answer does not fit bundle.json (a
                bundle.json that does not describe its model).
        """
        try:
            res = self.engine.run(input_ids, mask)
        except Exception as e:  # noqa: BLE001 - the engines raise their own types
            raise BundleError(f"the model failed on this input ({type(e).__name__}: {str(e)[:200]}); "
                              "bundle.json may not describe its model") from None
        x = res.get(output)
        hidden = self.info["model"]["hidden_size"]
        want = (input_ids.shape[0], hidden) if output == "sentence_embedding" else (*input_ids.shape, hidden)
        if x is None or tuple(np.shape(x)) != want:
            raise BundleError(f"the model's {output} is not {list(want)} as bundle.json describes it; "
                              "re-package with `encoderkit package`")
        return np.asarray(x)

    def head(self, hidden_rows, input_ids, mask, rows) -> np.ndarray:
        """The MLM head's logits at ``rows``, checked like ``run``."""
        try:
            logits = np.asarray(self.engine.mask_logits(hidden_rows, input_ids, mask, rows))
        except Exception as e:  # noqa: BLE001 - the engines raise their own types
            raise BundleError(f"the model's masked-LM head failed ({type(e).__name__}: {str(e)[:200]}); "
                              "bundle.json may not describe its model") from None
        if logits.shape != (len(rows), self.info["model"]["vocab_size"]):
            raise BundleError(f"the masked-LM head's logits are {list(logits.shape)}, not "
                              f"[{len(rows)}, {self.info['model']['vocab_size']}] as bundle.json describes")
        return logits

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
            if in_graph:  # pooling (and normalisation) already done by the graph
                out[batch] = self.run(input_ids, mask, "sentence_embedding")
                continue
            out[batch] = pool(self.run(input_ids, mask).astype(np.float32), mask, pooling)
        if normalize and not in_graph:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def mask_probs(self, input_ids, mask) -> tuple[np.ndarray, np.ndarray]:
        rows = np.argwhere(input_ids == self.info["mask_token_id"])
        rows_hidden = None
        if self.engine.head_takes_hidden:
            rows_hidden = self.run(input_ids, mask)[rows[:, 0], rows[:, 1]]
        logits = self.head(rows_hidden, input_ids, mask, rows).astype(np.float32)
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

    def classify(self, texts: list[str], top_k: int | None = 1, truncate: bool = False) -> list:
        """As `encoderkit classify` (transformers' text-classification pipeline): per text, the top_k
        {label, score} best first; scores are the softmax over the labels (sigmoid for one label)."""
        if self.engine.classifier is None:
            raise BundleError("this bundle has no classification head (package a model fine-tuned for "
                              "classification with --tasks classify)")
        if top_k is not None and (isinstance(top_k, bool) or top_k < 1):
            raise BundleError(f"top_k must be a positive integer, got {top_k}")
        return [ranked(row, self.info["model"]["labels"], top_k) for row in self.class_scores(texts, truncate)]

    def class_scores(self, texts: list[str], truncate: bool = False) -> np.ndarray:
        ids = self.tokenizer.encode(texts, truncate)
        out = np.zeros((len(ids), len(self.info["model"]["labels"])), dtype=np.float64)
        for batch, input_ids, mask in self._batches(ids):
            out[batch] = scores_of(self.engine.class_logits(input_ids, mask))
        return out


def scores_of(logits: np.ndarray) -> np.ndarray:
    """Softmax over the labels; the sigmoid when there is one label (as the pipeline does)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape[-1] == 1:
        return 1.0 / (1.0 + np.exp(-logits))
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def ranked(row: np.ndarray, labels: list[str], top_k: int | None) -> list[dict]:
    """The top_k {label, score} of one row, best first (a stable sort: ties keep label order)."""
    order = sorted(range(len(labels)), key=lambda j: -row[j])[: len(labels) if top_k is None else top_k]
    return [{"label": labels[j], "score": float(row[j])} for j in order]


def pool(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    if pooling == "cls":
        return hidden[:, 0]
    m = mask[:, :, None].astype(bool)
    if pooling == "max":
        return np.where(m, hidden, -np.inf).max(axis=1)
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1)


# ----------------------------------------------------------------------------- ner and qa
# Named entities and extractive question answering, with exactly `encoderkit ner|qa`'s semantics and
# JSON: transformers' pipeline("token-classification") (every aggregation strategy) and transformers
# 4.57's pipeline("question-answering") (windows, doc stride, word alignment, handle_impossible).
# The logic is copied from encoderkit/tasks/ner.py and encoderkit/tasks/qa.py; each function names
# the one it mirrors. The head graphs map the hidden row of every real token to logits.
AGGREGATIONS = ("none", "simple", "first", "average", "max")
QA_MAX_SEQ_LEN = 384  # tasks/qa.py MAX_SEQ_LEN: the pipeline's window (capped by the bundle's max length)
TOKEN_GRAPHS = {"ner": "token_classification", "qa": "question_answering"}  # task -> bundle.json graph role


class TokenTasks:
    """ner and qa over a bundle: its encoder session (with token types: BERT pairs) and the
    token-classification / question-answering head graphs, on onnxruntime."""

    def __init__(self, b: Bundle, threads: int | None = None):
        self.b = b
        self.graphs = {task: b.info["graphs"].get(role) for task, role in TOKEN_GRAPHS.items()}
        self.sessions: dict[str, object] = {}
        self.threads = threads
        self._windows = None  # ((max_length, stride), a tokenizer truncating that way)
        tok = b.tokenizer.tok
        # what ner reads of the tokenizer (encoderkit.core.tokenization.TextTokenizer's properties)
        self.subword_prefix = getattr(tok.model, "continuing_subword_prefix", None)
        unk = getattr(tok.model, "unk_token", None)
        self.unk_id = tok.token_to_id(unk) if unk else None

    def session(self, task: str):
        rel = self.graphs.get(task)
        if not rel or not hasattr(self.b.engine, "encoder"):
            what = {"ner": "token-classification head (package a *ForTokenClassification model with --tasks ner)",
                    "qa": "question-answering head (package a *ForQuestionAnswering model with --tasks qa)"}[task]
            raise BundleError(f"this bundle has no {what}")
        if task not in self.sessions:
            import onnxruntime as ort

            opts = ort.SessionOptions()  # as OrtEngine's
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.log_severity_level = 3
            if self.threads:
                opts.intra_op_num_threads = self.threads
            self.sessions[task] = ort.InferenceSession(str(self.b.root / rel), opts, providers=["CPUExecutionProvider"])
        return self.sessions[task]

    def every_row_logits(self, task: str, ids: list[list[int]], types: list[list[int]] | None = None) -> list:
        """Per sequence, its head logits [len, out] (backends/base.py head_logits on EVERY rows:
        the encoder, then the head on the hidden rows of real tokens only)."""
        head, engine = self.session(task), self.b.engine
        out: list = [None] * len(ids)
        for batch, input_ids, mask in self.b._batches(ids):
            feeds = {"input_ids": input_ids, "attention_mask": mask}
            if engine.typed:  # BERT-family graphs: the pair's token types (0 question, 1 context)
                tt = np.zeros_like(input_ids)
                for row, i in enumerate(batch):
                    if types is not None:
                        tt[row, : len(types[i])] = types[i]
                feeds["token_type_ids"] = tt
            last = dict(zip(engine.outputs, engine.encoder.run(None, feeds)))["last_hidden_state"]
            real = mask.astype(bool)
            rows = head.run(None, {"hidden": np.ascontiguousarray(last[real], dtype=np.float32)})[0]
            logits = np.zeros(mask.shape + (rows.shape[-1],), dtype=np.float32)
            logits[real] = rows
            if not np.isfinite(logits).all():
                raise BundleError(f"the {task} head produced non-finite logits (NaN/inf); the bundle's weights "
                                  "are broken")
            for row, i in enumerate(batch):
                out[i] = logits[row, : len(ids[i])]
        return out

    # ------------------------------------------------------------------------- ner
    def ner(self, texts: list[str], aggregation: str = "none", truncate: bool = False) -> list:
        """tasks/ner.py ner(): entities of each text, as pipeline("token-classification",
        aggregation_strategy=...) returns them."""
        self.session("ner")
        if aggregation not in AGGREGATIONS:
            raise BundleError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
        encs = self.encode_detailed(texts, truncate)
        scores = [softmax32(x) for x in self.every_row_logits("ner", [e.ids for e in encs])]
        labels = self.b.info["model"]["labels"]
        out = []
        for text, enc, sc in zip(texts, encs, scores):
            entities = self._aggregate(self._pre_entities(text, enc, sc), aggregation, labels)
            out.append([e for e in entities if e.get("entity") != "O" and e.get("entity_group") != "O"])
        return out

    def encode_detailed(self, texts: list[str], truncate: bool) -> list:
        """core/tokenization.py TextTokenizer.encode_detailed: the runner's input policy, then each
        text's Encoding (ids, tokens, offsets, special-token mask)."""
        tt = self.b.tokenizer
        ids = tt.encode(texts, truncate)  # empty / undecodable / over-long texts refused here
        encs = [(tt.trunc if len(x) < len(tt.tok.encode(t).ids) else tt.tok).encode(t) for t, x in zip(texts, ids)]
        special = {tt.tok.token_to_id(t.content) for t in tt.tok.get_added_tokens_decoder().values() if t.special}
        special.discard(self.b.info["mask_token_id"])
        for i, e in enumerate(encs):
            if all(t in special for t in e.ids):
                raise BundleError(f"texts[{i}] has no tokens once normalized (only spaces, control or zero-width "
                                  "characters?)")
        return encs

    def tokens_to_string(self, tokens: list[str]) -> str:
        """TextTokenizer.tokens_to_string: the tokenizer's decoder on tokens (convert_tokens_to_string)."""
        dec = self.b.tokenizer.tok.decoder
        return dec.decode(list(tokens)) if dec is not None else " ".join(tokens)

    def _pre_entities(self, text: str, enc, scores: np.ndarray) -> list[dict]:
        """tasks/ner.py _pre_entities (the pipeline's gather_pre_entities)."""
        pre = []
        for idx, (token_id, token, (start, end), special) in enumerate(zip(enc.ids, enc.tokens, enc.offsets,
                                                                           enc.special_tokens_mask)):
            if special:
                continue
            word_ref = text[start:end]
            if self.subword_prefix:  # WordPiece: a piece is a subword when it is not its text (the "##")
                is_subword = len(token) != len(word_ref)
            else:  # byte-level BPE: the pipeline's fallback, a piece not after a space
                is_subword = start > 0 and " " not in text[start - 1: start + 1]
            if self.unk_id is not None and token_id == self.unk_id:
                token, is_subword = word_ref, False
            pre.append({"word": token, "scores": scores[idx], "start": start, "end": end, "index": idx,
                        "is_subword": is_subword})
        return pre

    def _aggregate(self, pre: list[dict], aggregation: str, labels: list[str]) -> list[dict]:
        """tasks/ner.py _aggregate."""
        if aggregation in ("none", "simple"):
            entities = []
            for p in pre:
                j = int(p["scores"].argmax())
                entities.append({"entity": labels[j], "score": float(p["scores"][j]), "index": p["index"],
                                 "word": p["word"], "start": p["start"], "end": p["end"]})
            return entities if aggregation == "none" else self._group_entities(entities)
        words, group = [], None
        for p in pre:
            if group is None:
                group = [p]
            elif p["is_subword"]:
                group.append(p)
            else:
                words.append(self._aggregate_word(group, aggregation, labels))
                group = [p]
        if group is not None:
            words.append(self._aggregate_word(group, aggregation, labels))
        return self._group_entities(words)

    def _aggregate_word(self, pieces: list[dict], aggregation: str, labels: list[str]) -> dict:
        """tasks/ner.py _aggregate_word."""
        if aggregation == "first":
            scores = pieces[0]["scores"]
        elif aggregation == "max":
            scores = max(pieces, key=lambda p: p["scores"].max())["scores"]
        else:  # average
            scores = np.nanmean(np.stack([p["scores"] for p in pieces]), axis=0)
        j = int(scores.argmax())
        return {"entity": labels[j], "score": float(scores[j]),
                "word": self.tokens_to_string([p["word"] for p in pieces]),
                "start": pieces[0]["start"], "end": pieces[-1]["end"]}

    def _group_entities(self, entities: list[dict]) -> list[dict]:
        """tasks/ner.py _group_entities: adjacent entities of one type, a B- tag starting a new one."""
        groups, current = [], []
        for e in entities:
            if current:
                bi, tag = _bio(e["entity"])
                _, last_tag = _bio(current[-1]["entity"])
                if tag == last_tag and bi != "B":
                    current.append(e)
                    continue
                groups.append(self._group(current))
            current = [e]
        if current:
            groups.append(self._group(current))
        return groups

    def _group(self, entities: list[dict]) -> dict:
        """tasks/ner.py _group."""
        return {"entity_group": entities[0]["entity"].split("-", 1)[-1],
                "score": float(np.nanmean([e["score"] for e in entities])),
                "word": self.tokens_to_string([e["word"] for e in entities]),
                "start": entities[0]["start"], "end": entities[-1]["end"]}

    # ------------------------------------------------------------------------- qa
    def qa(self, pairs: list[tuple[str, str]], top_k: int = 1, max_answer_len: int = 15,
           doc_stride: int | None = None, max_seq_len: int | None = None, handle_impossible: bool = False) -> list:
        """tasks/qa.py qa(): per (question, context), the best answers {score, start, end, answer}
        (character offsets into the context), as transformers 4.57's pipeline("question-answering")."""
        self.session("qa")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise BundleError(f"top_k must be a positive integer, got {top_k!r}")
        longest = self.b.max_length
        max_seq_len = min(longest, QA_MAX_SEQ_LEN) if max_seq_len is None else max_seq_len
        doc_stride = min(max_seq_len // 2, 128) if doc_stride is None else doc_stride
        for name, v, lo, hi in (("max_answer_len", max_answer_len, 1, None), ("max_seq_len", max_seq_len, 8, longest),
                                ("doc_stride", doc_stride, 0, max_seq_len - 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
                raise BundleError(f"{name} must be an integer in {lo}..{hi if hi is not None else '∞'}, got {v!r}")
        if not pairs:
            raise BundleError("no question/context pairs given")
        windows = [(i, w) for i, (q, c) in enumerate(pairs) for w in self.windows(q, c, max_seq_len, doc_stride)]
        logits = self.every_row_logits("qa", [w.ids for _, w in windows], [w.type_ids for _, w in windows])
        cls_id = self.b.info["special_tokens"]["cls"]
        results = []
        for i, (_, context) in enumerate(pairs):
            mine = [(w, lg) for (j, w), lg in zip(windows, logits) if j == i]
            results.append(_qa_answers(mine, context, cls_id, top_k, max_answer_len, handle_impossible))
        return results

    def windows(self, question: str, context: str, max_length: int, stride: int) -> list:
        """core/tokenization.py TextTokenizer.encode_windows: question + context through the pair
        template, only the context cut into windows of max_length tokens sharing stride tokens."""
        tok = self.b.tokenizer.tok
        for what, t in (("question", question), ("context", context)):
            if not t.strip():
                raise BundleError(f"{what} is empty")
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:
                raise BundleError(f"{what} is not valid Unicode (lone surrogates: undecodable bytes?); "
                                  "pass UTF-8 text") from None
        added = tok.num_special_tokens_to_add(True)
        n_q = len(tok.encode(question, add_special_tokens=False).ids)
        n_c = len(tok.encode(context, add_special_tokens=False).ids)
        room = max_length - added - n_q
        if n_q + n_c + added > max_length:  # checked here: tokenizers would panic or raise
            if room <= 0:
                raise BundleError(f"the question is too long for windows of {max_length} tokens with a stride of "
                                  f"{stride} ({n_q} tokens); shorten it")
            if room <= stride:
                raise BundleError(f"doc_stride {stride} must be less than the {room} context tokens a window of "
                                  f"{max_length} holds beside this question; lower it")
        if self._windows is None or self._windows[0] != (max_length, stride):
            from tokenizers import Tokenizer

            win = Tokenizer.from_str(tok.to_str())
            win.enable_truncation(max_length, stride=stride, strategy="only_second")
            self._windows = ((max_length, stride), win)
        enc = self._windows[1].encode(question, context)
        return [enc, *enc.overflowing]


def softmax32(x: np.ndarray) -> np.ndarray:
    """tasks/kernels.py softmax (float32 in, float32 out)."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _bio(name: str) -> tuple[str, str]:
    """tasks/ner.py _tag."""
    if name.startswith("B-"):
        return "B", name[2:]
    if name.startswith("I-"):
        return "I", name[2:]
    return "I", name  # not in B-/I- form: a continuation


def _qa_answers(windows: list, context: str, cls_id: int, top_k: int, max_answer_len: int,
                handle_impossible: bool) -> list[dict]:
    """tasks/qa.py _answers (align_to_words=True): the pipeline's postprocess over one question's windows."""
    min_null = 1000000.0
    answers: list[dict] = []
    pre_topk = top_k * 2 + 10  # alignment may drop candidates
    for enc, logits in windows:
        p_mask = np.array([sid != 1 for sid in enc.sequence_ids], dtype=np.int64)
        p_mask[np.asarray(enc.ids) == cls_id] = 0
        starts, ends, scores, min_null = _qa_select(logits[:, 0][None], logits[:, 1][None], p_mask[None],
                                                    np.ones((1, len(enc.ids)), dtype=np.int64), min_null, pre_topk,
                                                    handle_impossible, max_answer_len)
        for s, e, score in zip(starts, ends, scores):
            start, end = _qa_indices(enc, int(s), int(e))
            text = context[start:end]
            same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
            if same is not None:
                same["score"] += float(score)
            else:
                answers.append({"score": float(score), "start": start, "end": end, "answer": text})
    if handle_impossible:
        answers.append({"score": float(min_null), "start": 0, "end": 0, "answer": ""})
    return sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]


def _qa_select(start, end, p_mask, attention_mask, min_null, top_k, handle_impossible, max_answer_len):
    """tasks/qa.py _select (the pipeline's select_starts_ends)."""
    desired = np.abs(p_mask - 1) & attention_mask
    undesired = desired == 0
    start = np.where(undesired, -10000.0, start)
    end = np.where(undesired, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible:
        min_null = min(min_null, float(start[0, 0] * end[0, 0]))
    start[0, 0] = end[0, 0] = 0.0
    starts, ends, scores = _qa_decode_spans(start, end, top_k, max_answer_len, desired)
    return starts, ends, scores, min_null


def _qa_decode_spans(start, end, top_k, max_answer_len, desired):
    """tasks/qa.py _decode_spans (the pipeline's decode_spans): every span start <= end < start + max_answer_len."""
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    flat = candidates.flatten()
    if top_k == 1:
        order = [np.argmax(flat)]
    elif len(flat) < top_k:
        order = np.argsort(-flat)
    else:
        idx = np.argpartition(-flat, top_k)[0:top_k]
        order = idx[np.argsort(-flat[idx])]
    starts, ends = np.unravel_index(order, candidates.shape)[1:]
    # as the pipeline: desired is [1, seq], so its nonzero() row indices (all 0) count as allowed too
    keep = np.isin(starts, desired.nonzero()) & np.isin(ends, desired.nonzero())
    starts, ends = starts[keep], ends[keep]
    return starts, ends, candidates[0, starts, ends]


def _qa_indices(enc, s: int, e: int) -> tuple[int, int]:
    """tasks/qa.py _indices: character offsets of the span, widened to whole words."""
    try:
        start_word, end_word = enc.token_to_word(s), enc.token_to_word(e)
        return enc.word_to_chars(start_word, 1)[0], enc.word_to_chars(end_word, 1)[1]
    except Exception:  # noqa: BLE001 - tokenizers raises plain Exception (no word: a special token)
        return enc.offsets[s][0], enc.offsets[e][1]


def render_ner(texts: list[str], result: list) -> list[str]:
    """encoderkit/tasks/__init__.py _render_ner: the text output of `encoderkit ner`."""
    lines = []
    for text, entities in zip(texts, result):
        lines.append(text)
        for e in entities:
            label = e.get("entity_group", e.get("entity"))
            lines.append(f"  {e['score']:.4f}  {label:<10} {e['start']:>4}-{e['end']:<4} {text[e['start']:e['end']]!r}")
    return lines


def render_qa(pairs: list[tuple[str, str]], result: list) -> list[str]:
    """encoderkit/tasks/__init__.py _render_qa: the text output of `encoderkit qa`."""
    lines = []
    for (question, _), answers in zip(pairs, result):
        lines.append(question)
        for a in answers:
            lines.append(f"  {a['score']:.4f}  {a['start']:>4}-{a['end']:<4} {a['answer']!r}")
    return lines


def add_token_task_parsers(sub) -> None:
    """The ner and qa subcommands (the flags of `encoderkit ner|qa`)."""
    s = sub.add_parser("ner", help="named entities (pipeline('token-classification') semantics)")
    s.add_argument("texts", nargs="+", metavar="TEXT")
    s.add_argument("--aggregation", choices=AGGREGATIONS, default="none",
                   help="none: every token; simple: adjacent tokens of an entity grouped; first/average/max: "
                        "one label per word, then grouped")
    s.add_argument("--truncate", action="store_true", help="cut texts longer than the bundle's max length")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("qa", help="extractive question answering (pipeline('question-answering') semantics)")
    s.add_argument("--question", nargs="+", required=True, metavar="QUESTION", help="the question(s), paired in order")
    s.add_argument("--context", nargs="+", required=True, metavar="CONTEXT", help="the context(s), paired in order")
    s.add_argument("--top-k", type=int, default=1, help="answers per question, best first")
    s.add_argument("--max-answer-len", type=int, default=15, help="longest answer in tokens")
    s.add_argument("--doc-stride", type=int, default=None,
                   help="tokens neighbouring windows of a long context share (default: half the window, at most 128)")
    s.add_argument("--max-seq-len", type=int, default=None,
                   help="tokens per window, question included (default: the bundle's max length, at most 384)")
    s.add_argument("--handle-impossible", action="store_true",
                   help="let the empty answer compete (questions the context does not answer)")
    s.add_argument("--json", action="store_true")


def run_token_task(b: Bundle, a, threads: int | None) -> None:
    """Run `ner` or `qa` from parsed arguments and print the result."""
    tasks = TokenTasks(b, threads)
    if a.command == "ner":
        result = tasks.ner(a.texts, a.aggregation, a.truncate)
        print(json.dumps(result, ensure_ascii=False) if a.json else "\n".join(render_ner(a.texts, result)))
        return
    if len(a.question) != len(a.context):
        raise BundleError("give as many --question as --context values (one per input)")
    pairs = list(zip(a.question, a.context))
    result = tasks.qa(pairs, a.top_k, a.max_answer_len, a.doc_stride, a.max_seq_len, a.handle_impossible)
    print(json.dumps(result, ensure_ascii=False) if a.json else "\n".join(render_qa(pairs, result)))


def token_task_self_test(b: Bundle) -> list[str]:
    """The ner / qa probes of bundle.json against this runner: fp32 the same entities / answers with
    scores within atol; int8/fp16 token-tag and top-answer-span agreement >= the top-1 bound."""
    probes, tol, lines = b.info["probes"], b.info["probes"]["tolerance"], []
    if not probes.get("ner") and not probes.get("qa"):
        return lines
    tasks = TokenTasks(b)
    exact = tol["kind"] == "atol"
    if probes.get("ner"):
        worst, agree, n = 0.0, 0, 0
        for p in probes["ner"]:
            got_ids = b.tokenizer.encode([p["text"]], p["truncate"])[0]
            check(got_ids == p["ids"], f"ner: token ids differ from encoderkit's for {p['text'][:40]!r}")
            for aggregation, want in p["entities"].items():
                (got,) = tasks.ner([p["text"]], aggregation, p["truncate"])
                if exact:
                    strip = lambda xs: [{k: v for k, v in x.items() if k != "score"} for x in xs]  # noqa: E731
                    check(strip(got) == strip(want), f"ner ({aggregation}): entities differ from the "
                          f"{probes['reference']} reference for {p['text'][:40]!r}: "
                          f"{strip(got)[:3]} vs {strip(want)[:3]}")
                    worst = max([worst] + [abs(g["score"] - w["score"]) for g, w in zip(got, want)])
                elif aggregation == "none":  # tags of every token: the reference's and ours, as sets
                    g = {(x["index"], x["entity"]) for x in got}
                    w = {(x["index"], x["entity"]) for x in want}
                    agree, n = agree + len(g & w), n + len(g | w)
        count = f"{len(probes['ner'])} texts x {len(AGGREGATIONS)} aggregations"
        if exact:
            check(worst <= tol["atol"], f"ner: max |score diff| {worst:.3g} > {tol['atol']:g}")
            lines.append(f"ner: {count}, the same entities, max |score diff| {worst:.2e} <= {tol['atol']:g}")
        else:
            rate = agree / max(n, 1)
            check(rate >= tol["top1"], f"ner: token tag agreement {rate:.3f} < {tol['top1']}")
            lines.append(f"ner: {len(probes['ner'])} texts, token tag agreement {rate:.3f} >= {tol['top1']}")
    if probes.get("qa"):
        worst, agree = 0.0, 0
        for p in probes["qa"]:
            o = p["options"]
            stride = o.get("doc_stride") or min(o["max_seq_len"] // 2, 128)
            ids = [list(w.ids) for w in tasks.windows(p["question"], p["context"], o["max_seq_len"], stride)]
            check(ids == p["window_ids"], f"qa: window token ids differ from encoderkit's for {p['question'][:40]!r}")
            (got,) = tasks.qa([(p["question"], p["context"])], **o)
            want = p["answers"]
            span = lambda xs: [(x["answer"], x["start"], x["end"]) for x in xs]  # noqa: E731
            if exact:
                check(span(got) == span(want), f"qa: answers differ from the {probes['reference']} reference "
                      f"for {p['question'][:40]!r}: {span(got)} vs {span(want)}")
                worst = max([worst] + [abs(g["score"] - w["score"]) for g, w in zip(got, want)])
            agree += int(span(got)[:1] == span(want)[:1])
        n = len(probes["qa"])
        windows = max(len(p["window_ids"]) for p in probes["qa"])
        if exact:
            check(worst <= tol["atol"], f"qa: max |score diff| {worst:.3g} > {tol['atol']:g}")
            lines.append(f"qa: {n} questions (up to {windows} windows), the same answers, max |score diff| "
                         f"{worst:.2e} <= {tol['atol']:g}")
        else:
            check(agree / n >= tol["top1"], f"qa: top answer span agreement {agree / n:.3f} < {tol['top1']}")
            lines.append(f"qa: {n} questions (up to {windows} windows), top answer span agreement "
                         f"{agree / n:.3f} >= {tol['top1']}")
    return lines


# ----------------------------------------------------------------------------- self-test
def probe_list(probes: dict, key: str, fields: dict) -> list[dict]:
    """``probes[key]``: a list of objects with ``fields`` (name -> check), else BundleError."""
    items = probes.get(key, [])
    if not isinstance(items, list) or not all(isinstance(p, dict) and all(
            name in p and ok(p[name]) for name, ok in fields.items()) for p in items):
        raise BundleError(f"bundle.json: probes.{key} is not a list of {{{', '.join(fields)}}}; "
                          "re-package with `encoderkit package`")
    return items


def _ids(v) -> bool:
    return isinstance(v, list) and bool(v) and all(_int(x) for x in v)


def _numbers(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)


def _text(v) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _top(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(m, list) and bool(m) and all(
        isinstance(t, dict) and _int(t.get("token")) and _numbers([t.get("score")]) for t in m) for m in v)


def self_test(b: Bundle) -> list[str]:
    """Run the probes stored at package time; return report lines.

    Raises:
        SelfTestFailed: an answer misses its probe (one line). BundleError: malformed probes.
    """
    probes = b.info.get("probes")
    if not isinstance(probes, dict):
        raise BundleError("bundle.json: no 'probes' to self-test against; re-package with `encoderkit package`")
    tol = probes.get("tolerance")
    if not (isinstance(tol, dict) and ((tol.get("kind") == "atol" and _numbers([tol.get("atol")]))
                                       or (tol.get("kind") == "quantized" and _numbers([tol.get("cosine")])
                                           and _numbers([tol.get("top1")])))):
        raise BundleError("bundle.json: probes.tolerance is not {kind: atol, atol} or {kind: quantized, cosine, "
                          "top1}; re-package with `encoderkit package`")
    common = {"text": _text, "truncate": lambda v: isinstance(v, bool), "ids": _ids}
    embed = probe_list(probes, "embed", common | {"embedding": _numbers})
    fill = probe_list(probes, "fill_mask", common | {"top": _top})
    if not embed:
        raise BundleError("bundle.json: probes.embed is empty; re-package with `encoderkit package`")
    reference = str(probes.get("reference", "the reference"))
    lines = []
    for p in embed + fill:
        got = b.tokenizer.encode([p["text"]], p["truncate"])[0]
        check(got == p["ids"], f"token ids differ from encoderkit's for {p['text'][:40]!r}: {got[:12]} vs {p['ids'][:12]}")
    lines.append(f"token ids: identical on {len(embed) + len(fill)} probes")
    worst, cos = 0.0, 1.0
    for p in embed:
        e = b.embed([p["text"]], truncate=p["truncate"])[0]
        ref = np.asarray(p["embedding"], dtype=np.float32)
        check(ref.shape == e.shape, f"embed: the reference has {ref.shape[0]} values, the model gives {e.shape[0]}")
        diff = float(np.abs(e - ref).max())
        worst = max(worst, diff) if np.isfinite(diff) else float("inf")  # NaN never passes
        c = float(e @ ref / max(np.linalg.norm(e) * np.linalg.norm(ref), 1e-12))
        cos = min(cos, c) if np.isfinite(c) else float("-inf")
    if tol["kind"] == "atol":
        check(worst <= tol["atol"], f"embed: max |diff| {worst:.3g} > {tol['atol']:g} against the {reference} reference")
        lines.append(f"embed: {len(embed)} probes, max |diff| {worst:.2e} <= {tol['atol']:g} vs {reference}")
    else:
        check(cos >= tol["cosine"], f"embed: min cosine {cos:.4f} < {tol['cosine']} against the {reference} reference")
        lines.append(f"embed: {len(embed)} probes, min cosine {cos:.4f} >= {tol['cosine']} vs {reference}")
    if fill:
        if b.engine.head is None:
            raise BundleError("bundle.json has fill-mask probes but the bundle has no masked-LM head")
        worst, agree, n = 0.0, 0, 0
        vocab = b.info["model"]["vocab_size"]
        for p in fill:
            input_ids, mask = b._pad([p["ids"]])
            rows, probs = b.mask_probs(input_ids, mask)
            check(len(rows) == len(p["top"]), f"fill-mask: {len(rows)} masks in {p['text'][:40]!r}, the reference "
                                               f"has {len(p['top'])}")
            for row, top in zip(probs, p["top"]):
                tokens = [t["token"] for t in top]
                check(max(tokens) < vocab, f"fill-mask: a reference token id is outside the vocabulary ({vocab})")
                d = float(np.abs(row[tokens] - [t["score"] for t in top]).max())
                worst = max(worst, d) if np.isfinite(d) else float("inf")
                agree += int(np.argmax(row) == tokens[0])
                n += 1
        if tol["kind"] == "atol":
            check(worst <= tol["atol"], f"fill-mask: max |score diff| {worst:.3g} > {tol['atol']:g}")
            lines.append(f"fill-mask: {n} masks, max |score diff| of the reference top-5 {worst:.2e} <= {tol['atol']:g}")
        else:
            check(agree / n >= tol["top1"], f"fill-mask: top-1 agreement {agree / n:.3f} < {tol['top1']}")
            lines.append(f"fill-mask: {n} masks, top-1 agreement {agree / n:.3f} >= {tol['top1']}")
    if probes.get("classify"):
        worst, agree = 0.0, 0
        for p in probes["classify"]:
            got = b.class_scores([p["text"]], p["truncate"])[0]
            worst = max(worst, float(np.abs(got - p["scores"]).max()))
            agree += int(np.argmax(got) == np.argmax(p["scores"]))
        n = len(probes["classify"])
        if tol["kind"] == "atol":
            check(worst <= tol["atol"], f"classify: max |score diff| {worst:.3g} > {tol['atol']:g}")
            lines.append(f"classify: {n} probes, max |score diff| {worst:.2e} <= {tol['atol']:g}")
        else:
            check(agree / n >= tol["top1"], f"classify: label agreement {agree / n:.3f} < {tol['top1']}")
            lines.append(f"classify: {n} probes, label agreement {agree / n:.3f} >= {tol['top1']} "
                         f"(max |score diff| {worst:.2e})")
    return lines + token_task_self_test(b)


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


class Parser(argparse.ArgumentParser):
    """A usage error is one line (the valid choices, what to do), exit 2: never the usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def main(argv: list[str] | None = None) -> int:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=HERE, help="bundle directory (default: this file's)")
    p.add_argument("--self-test", action="store_true", help="check the bundle against its stored probe outputs")
    p.add_argument("--measure", action="store_true", help="with --self-test: then print load time, latency, peak RSS as a JSON line")
    p.add_argument("--threads", type=int, default=None)
    sub = p.add_subparsers(dest="command", parser_class=Parser)
    for name in ("embed", "fill-mask", "classify", "tokenize"):
        s = sub.add_parser(name)
        s.add_argument("texts", nargs="+", metavar="TEXT")
        s.add_argument("--truncate", action="store_true", help="cut texts longer than the bundle's max length")
        s.add_argument("--json", action="store_true")
        if name == "embed":
            s.add_argument("--pooling", choices=POOLINGS, default=None, help="default: the bundle's")
            s.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None)
        if name == "fill-mask":
            s.add_argument("--top-k", type=int, default=5)
        if name == "classify":
            s.add_argument("--top-k", type=int, default=1, help="labels per text, best first")
    add_token_task_parsers(sub)
    a = p.parse_args(argv)
    if not a.self_test and not a.command:
        p.error("give a command (embed, fill-mask, classify, ner, qa, tokenize) or --self-test")
    try:
        for i, t in enumerate(getattr(a, "texts", None) or []):  # before anything loads
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:  # undecodable bytes in argv arrive as lone surrogates
                raise BundleError(f"texts[{i}] is not valid UTF-8 (undecodable bytes or lone surrogates); "
                                  "pass UTF-8 text") from None
        if a.threads is not None and not 1 <= a.threads <= 1024:
            raise BundleError(f"--threads must be in 1..1024, got {a.threads}")
        try:
            b = Bundle(a.bundle, threads=a.threads)
        except ImportError as e:  # the engine or tokenizers is not installed
            raise BundleError(f"{e.name or e} is not installed: pip install -r requirements.txt") from None
        if a.self_test:
            try:
                lines = self_test(b)
            except SelfTestFailed as e:
                print(f"self-test FAILED: {e}", file=sys.stderr)
                return 1
            print("\n".join(lines + ["self-test passed"]))
            if a.measure:  # after the self-test ran: the median of 5 calls on one short text
                text = b.info["probes"]["embed"][0]["text"]  # checked by self_test
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
        if a.command in TOKEN_GRAPHS:  # ner, qa
            run_token_task(b, a, a.threads)
        elif a.command == "tokenize":
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
        elif a.command == "classify":
            results = b.classify(a.texts, a.top_k, a.truncate)
            if a.json:
                print(json.dumps(results, ensure_ascii=False))
            else:
                for text, preds in zip(a.texts, results):
                    print(text)
                    for q in preds:
                        print(f"  {q['score']:.4f}  {q['label']}")
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `run.py embed ... | head -1`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    sys.exit(code)
