"""What every deployment target shares: options, the converted source, probe outputs from the
torch reference, bundle.json (sha256 of every file) and the package-time self-test.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ArtifactError, InputError, ParityError
from ..core.heads import HEADS, QUESTION_ANSWERING, TOKEN_CLASSIFICATION
from ..storage.files import OWNER_FILE, atomic_dir, sha256_file
from ..core.spec import ModelSpec
from ..tasks import bundle_tasks
from ..tasks.kernels import POOLINGS

QUANTIZE = ("none", "int8", "fp16")
TASKS = tuple(bundle_tasks())  # the task table's rows that bundles run

BUNDLE_FILE = "bundle.json"
TOKENIZER_FILE = "tokenizer.json"
# The runner's only dependencies, pinned to what these bundles were built and tested with
# (ORT 1.20 is the oldest that loads opset 18 with the com.microsoft fused operators used here).
PY_REQUIREMENTS = {"onnxruntime": "onnxruntime>=1.20,<2", "litert": "ai-edge-litert>=2.0,<3",
                   "tensorflow": "tensorflow-cpu>=2.18,<3"}
PY_COMMON_REQUIREMENTS = ["tokenizers>=0.20,<1", "numpy>=1.26,<3"]

# Probe texts every bundle carries expected outputs for: ASCII, non-ASCII (accents, CJK, emoji)
# and one text longer than any model here, which must be truncated the same way everywhere.
PROBE_TEXTS = ["The quick brown fox jumps over the lazy dog.",
               "Zürich's café serves crème brûlée — naïve 東京 🍣 ✓",
               ]
_LONG_WORDS = ("tokenizers must agree on long inputs too, where truncation keeps the special tokens "
               "at both ends and cuts the middle of the sentence at exactly the same token. ")


@dataclass(frozen=True)
class PackageOptions:
    """Validated options of one ``encoderkit package`` call (see ``encoderkit.deploy.package``)."""

    target: str
    quantize: str = "none"
    tasks: tuple[str, ...] | None = None  # None: every task the model supports
    max_length: int | None = None
    pooling: str | None = None  # in-graph pooling; None: pooled by the runner
    normalize: bool = False
    ort_format: bool = False
    name: str | None = None
    threads: int | None = None  # web: the page's wasm thread count (None: the browser's cores, up to 4)

    @classmethod
    def parse(cls, *, target: str, quantize: str | None, tasks: str | list[str] | None, max_length: int | None,
              pooling: str | None, normalize: bool, ort_format: bool, name: str | None,
              threads: int | None = None) -> PackageOptions:
        """Check option values (not yet against the model).

        Raises:
            InputError: naming the bad value and the valid ones.
        """
        quantize = quantize or "none"
        if quantize not in QUANTIZE:
            raise InputError(f"--quantize takes {', '.join(QUANTIZE)}; got {quantize!r}")
        if isinstance(tasks, str):
            tasks = [t.strip() for t in tasks.split(",") if t.strip()]
        if tasks is not None:
            for t in tasks:
                if t not in TASKS:
                    raise InputError(f"unknown task {t!r}; choose from {', '.join(TASKS)}")
            if not tasks:
                raise InputError(f"--tasks is empty; choose from {', '.join(TASKS)}")
        if pooling is not None and pooling not in POOLINGS:
            raise InputError(f"--pooling takes {', '.join(POOLINGS)}; got {pooling!r}")
        if normalize and pooling is None:
            raise InputError("--normalize goes with --pooling (both are put into the bundled graph)")
        if max_length is not None and (isinstance(max_length, bool) or max_length < 3):
            raise InputError(f"--max-length must be an integer >= 3, got {max_length!r}")
        if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise InputError(f"--name {name!r}: use letters, digits, '_', '-', '.'")
        if threads is not None:
            if target != "web":
                raise InputError("--threads is an option of --target web (the page's wasm threads)")
            if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 64:
                raise InputError(f"--threads must be an integer from 1 to 64, got {threads!r}")
        return cls(target, quantize, tuple(dict.fromkeys(tasks)) if tasks else None, max_length, pooling,
                   normalize, ort_format, name, threads)


@dataclass(frozen=True)
class Converted:
    """A checked ``encoderkit convert`` output directory."""

    path: Path
    formats: tuple[str, ...]
    spec: ModelSpec
    source: str

    @classmethod
    def open(cls, path: Path) -> Converted:
        """Read the manifest and spec of a converted directory.

        Raises:
            ArtifactError: not a convert output, or its manifest fails.
        """
        from ..backends.loading import converted_manifest
        from ..storage.hf import read_saved_spec

        manifest = converted_manifest(path)
        if manifest is None:
            raise ArtifactError(f"{path} is not an `encoderkit convert` output (no convert manifest.json); "
                                f"run: encoderkit convert MODEL --to safetensors,onnx --out DIR")
        formats = tuple(manifest.get("formats", []))
        if not formats:
            raise ArtifactError(f"{path}: its manifest lists no format")
        return cls(path, formats, read_saved_spec(path / formats[0]), str(manifest.get("source", path.name)))

    def need(self, fmt: str, hint: str = "") -> Path:
        """The format's directory, through the one gate every loader uses (manifest, sha256 of the
        format's files, and its origin check: a SavedModel is a program).

        Raises:
            ArtifactError: the format is missing (saying how to add it), a file changed, or a
                program that is not provably one encoderkit exported.
        """
        from ..backends.loading import open_converted

        return open_converted(self.path, fmt, hint=hint)

    @property
    def default_name(self) -> str:
        """A serving-safe model name from the source's last path part (letters, digits, _ . -)."""
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(self.source).name).strip("-._")
        return name or "encoder"


@dataclass(frozen=True)
class Plan:
    """Options resolved against the model: what exactly goes into the bundle."""

    options: PackageOptions
    tasks: tuple[str, ...]
    max_length: int
    name: str


# Targets whose runner runs the converted ONNX graphs, the classification head among them
# (classifier.onnx); the TFLite and TF Serving exports carry no classification head yet.
ONNX_TARGETS = ("onnx", "node", "triton", "web")
# ner and qa (the token-classification / question-answering head graphs beside the encoder) run in
# run.py (and run.mjs): onnx, node, triton. Not in the page (encoderkit.mjs has no offsets yet),
# not in the TFLite / TF Serving exports.
TOKEN_TASK_TARGETS = ("onnx", "node", "triton")
# task -> the head it needs (core.heads); the graph's key in onnx_info.json is head_key(head)
TOKEN_TASK_HEADS = {"ner": TOKEN_CLASSIFICATION, "qa": QUESTION_ANSWERING}


def plan(source: Converted, options: PackageOptions) -> Plan:
    """Resolve tasks and max length against the model.

    Raises:
        InputError: a task the model cannot do, or a max length beyond its position table.
    """
    spec = source.spec
    classify_ok = options.target in ONNX_TARGETS
    supported = (("embed",) + (("fill-mask",) if spec.has_mlm_head else ())
                 + (("classify",) if spec.has_classifier and classify_ok else ())
                 + tuple(t for t, head in TOKEN_TASK_HEADS.items()
                         if spec.has_head(head) and options.target in TOKEN_TASK_TARGETS))
    tasks = options.tasks or supported
    check_token_tasks(spec, options.target, tuple(tasks), supported)
    if "classify" in tasks and not spec.has_classifier:
        raise InputError("this model has no sequence-classification head; fine-tune one (encoderkit finetune "
                         "MODEL --data FILE --out DIR, then convert DIR) or package with --tasks "
                         + ",".join(t for t in supported if t != "classify"))
    if "classify" in tasks and not classify_ok:
        raise InputError(f"task 'classify' is packaged for the ONNX-based targets ({', '.join(ONNX_TARGETS)}), "
                         f"not {options.target}; package with --tasks {','.join(t for t in supported if t != 'classify')}")
    if "fill-mask" in tasks and not spec.has_mlm_head:
        raise InputError("this model has no masked-LM head (e.g. a sentence-embedding BertModel); "
                         "package it with --tasks embed")
    longest = spec.max_tokens_per_text
    max_length = options.max_length or longest
    if max_length > longest:
        raise InputError(f"--max-length {max_length} exceeds the model's {longest} positions")
    return Plan(options, tuple(tasks), max_length, options.name or source.default_name)


def check_token_tasks(spec: ModelSpec, target: str, tasks: tuple[str, ...], supported: tuple[str, ...]) -> None:
    """ner / qa asked of a model without the head, or of a target whose runner cannot run them.

    Raises:
        InputError: one line, naming what to package instead.
    """
    others = ",".join(t for t in supported if t not in TOKEN_TASK_HEADS) or "embed"
    for task, head in TOKEN_TASK_HEADS.items():
        if task not in tasks:
            continue
        if not spec.has_head(head):
            raise InputError(f"task {task!r}: {HEADS[head].missing}; or package with --tasks {others}")
        if target not in TOKEN_TASK_TARGETS:
            why = (" (the page's encoderkit.mjs has no character offsets yet; package --target node for "
                   "JavaScript)" if target == "web" else "")
            raise InputError(f"task {task!r} is packaged for the {', '.join(TOKEN_TASK_TARGETS)} targets, not "
                             f"{target}{why}; package with --tasks {others}")


def template(name: str) -> str:
    """The text of a runner template shipped as package data (``encoderkit/deploy/templates``)."""
    return resources.files("encoderkit.deploy").joinpath("templates", name).read_text(encoding="utf-8")


def write_tokenizer(src_dir: Path, out: Path, rel: str = TOKENIZER_FILE) -> str:
    """Copy tokenizer.json with its own truncation/padding settings removed.

    The runners apply the bundle's max length themselves (refusing or truncating, as encoderkit
    does); a tokenizer.json that truncates silently (sentence-transformers' ship one at 128)
    would cut inputs behind the runner's back, differently in each tokenizer library.
    """
    from ..storage.manifest import read_json_bounded

    path = src_dir / TOKENIZER_FILE
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; re-run encoderkit convert")
    data = read_json_bounded(path, what=TOKENIZER_FILE)  # size-bounded; nesting too deep is an ArtifactError
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: not a tokenizer.json; re-run encoderkit convert")
    data["truncation"] = None
    data["padding"] = None
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    (out / rel).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    for extra in ("tokenizer_config.json", "special_tokens_map.json"):  # JS tokenizers read the config
        if (src_dir / extra).is_file():
            shutil.copy2(src_dir / extra, (out / rel).parent / extra)
    return rel


def probe_texts(spec: ModelSpec, tasks: tuple[str, ...], max_length: int) -> tuple[list[dict], list[dict]]:
    """(embed probes, fill-mask probes) as {"text", "truncate"} dicts; the last of each is over-long."""
    long_text = _LONG_WORDS * (max_length // 8 + 8)  # > max_length tokens in any tokenizer here
    embed = [{"text": t, "truncate": False} for t in PROBE_TEXTS] + [{"text": long_text, "truncate": True}]
    fill = []
    if "fill-mask" in tasks:
        m = spec.mask_token
        fill = [{"text": f"The capital of France is {m}.", "truncate": False},
                {"text": f"Crème brûlée is a {m} dessert from {m}, 東京 🍣.", "truncate": False},
                {"text": f"{m} " + long_text, "truncate": True}]
    return embed, fill


def reference_outputs(source: Converted, p: Plan, embed_probes: list[dict], fill_probes: list[dict],
                      pooling: str, normalize: bool) -> dict[str, Any]:
    """Expected outputs on the probes from the torch reference (safetensors) at package time.

    Without a safetensors export the fp32 ONNX model is the reference (bundle.json says which).
    """
    from ..backends.loading import load
    from ..core.batching import pad_batch
    from ..core.tokenization import TextTokenizer, load_tokenizer
    from ..tasks.kernels import pool
    from ..tasks.kernels import softmax as _softmax

    reference = "torch" if "safetensors" in source.formats else "onnx"
    rt = load(source.path, reference)
    spec = source.spec
    tok = TextTokenizer(load_tokenizer(source.path / source.formats[0]), p.max_length, spec.mask_token)
    out: dict[str, Any] = {"reference": reference, "embed": [], "fill_mask": [],
                           "classify": [] if "classify" in p.tasks else None}
    def encode(probe: dict) -> tuple[dict, list[int]]:
        # a probe is truncated when it is longer than this bundle's max length (tiny BPEs make
        # many tokens of the short probes too)
        try:
            (ids,) = tok.encode([probe["text"]])
            return {**probe, "truncate": False}, ids
        except InputError:  # longer than max_length
            (ids,) = tok.encode([probe["text"]], truncate=True)
            return {**probe, "truncate": True}, ids

    for probe in embed_probes:
        probe, ids = encode(probe)
        input_ids, mask = pad_batch([ids], spec.pad_token_id)
        e = pool(rt.forward(input_ids, mask).last_hidden_state.astype(np.float32), mask, pooling)[0]
        if normalize:
            e = e / max(float(np.linalg.norm(e)), 1e-12)
        out["embed"].append({**probe, "ids": ids, "embedding": [float(x) for x in e]})
    for probe in fill_probes:
        probe, ids = encode(probe)
        if spec.mask_token_id not in ids:
            continue  # its mask was cut away at a small --max-length
        input_ids, mask = pad_batch([ids], spec.pad_token_id)
        rows = np.argwhere(input_ids == spec.mask_token_id)
        probs = _softmax(rt.mask_logits(input_ids, mask, rows).astype(np.float32))
        top = [[{"token": int(j), "score": float(row[j])} for j in np.argsort(-row, kind="stable")[:5]]
               for row in probs]
        out["fill_mask"].append({**probe, "ids": ids, "top": top})
    out.update(token_task_references(rt, tok, p))
    if out["classify"] is None:
        del out["classify"]
        return out
    from ..tasks.classify import scores_of

    for probe in embed_probes:  # the same texts; scores of every label, as classify(top_k=None)
        probe, ids = encode(probe)
        input_ids, mask = pad_batch([ids], spec.pad_token_id)
        scores = scores_of(rt.classify_logits(input_ids, mask))[0]
        out["classify"].append({**probe, "ids": ids, "scores": [float(x) for x in scores]})
    return out


# ner / qa probes: a text with entities (and one with accents, CJK and an emoji, whose offsets
# count code points), a context split into several windows, and a question it does not answer.
NER_PROBES = ["Ada Lovelace met Charles Babbage in London in 1833.",
              "Zoë Müller flew from São Paulo to Zürich — 東京 🍣, twice."]
QA_CONTEXT = ("The Analytical Engine was a proposed mechanical general-purpose computer designed by the English "
              "mathematician Charles Babbage. Ada Lovelace wrote the first algorithm intended for it in 1843, "
              "and she is often regarded as the first computer programmer.")
QA_WINDOWS = 3  # the long context spans at least this many windows


def qa_window(max_length: int) -> int:
    """Tokens per QA window in a bundle: the runners' default (qa's MAX_SEQ_LEN capped by max_length)."""
    from ..tasks.qa import MAX_SEQ_LEN

    return min(max_length, MAX_SEQ_LEN)


def qa_probe_pairs(tok: Any, max_length: int) -> list[dict[str, Any]]:
    """The qa probes, each {"question", "context", "options"}: two questions on a short context,
    one on a context of at least QA_WINDOWS windows (corpus lines around the short context), and
    one the context does not answer (with handle_impossible)."""
    from ..core.texts import corpus_lines

    window = qa_window(max_length)
    stride = min(window // 2, 128)
    lines, before, after = corpus_lines(), [], []
    question = "Who designed the Analytical Engine?"

    def long_context() -> str:
        return " ".join(before + [QA_CONTEXT] + after)

    need = QA_WINDOWS * (window - stride) + window  # tokens of context that make QA_WINDOWS windows
    while len(tok.encode_plain(long_context())) < need and len(before) + len(after) < 4 * len(lines):
        k = len(before) + len(after)
        (before if k % 2 else after).append(lines[k % len(lines)])
    opts = {"top_k": 3, "max_answer_len": 15, "max_seq_len": window, "handle_impossible": False}
    return [{"question": question, "context": QA_CONTEXT, "options": dict(opts)},
            {"question": "When did Ada Lovelace write the first algorithm?", "context": QA_CONTEXT,
             "options": dict(opts, top_k=2)},
            {"question": question, "context": long_context(), "options": dict(opts)},
            {"question": "Who was the queen of Hungary?", "context": QA_CONTEXT,
             "options": dict(opts, top_k=2, handle_impossible=True)}]


def token_task_references(rt: Any, tok: Any, p: Plan) -> dict[str, Any]:
    """Reference outputs of the ner probes (every aggregation) and the qa probes, on ``rt``.

    Raises:
        InputError: the qa probe question does not fit this bundle's windows (a tiny --max-length).
    """
    from ..tasks.ner import AGGREGATIONS, ner
    from ..tasks.qa import qa

    out: dict[str, Any] = {}
    if "ner" in p.tasks:
        out["ner"] = []
        for text in NER_PROBES:
            try:  # truncated only when longer than this bundle's max length, as the other probes
                (enc,), truncate = tok.encode_detailed([text]), False
            except InputError:
                (enc,), truncate = tok.encode_detailed([text], truncate=True), True
            out["ner"].append({"text": text, "truncate": truncate, "ids": list(enc.ids),
                               "entities": {a: ner(rt, [text], a, truncate=truncate)[0] for a in AGGREGATIONS}})
    if "qa" in p.tasks:
        out["qa"] = []
        for probe in qa_probe_pairs(tok, p.max_length):
            o = probe["options"]
            try:
                windows = tok.encode_windows(probe["question"], probe["context"], max_length=o["max_seq_len"],
                                             stride=min(o["max_seq_len"] // 2, 128))
                (answers,) = qa(rt, [(probe["question"], probe["context"])], **o)
            except InputError as e:
                raise InputError(f"--max-length {p.max_length} is too short for the qa probes ({e})") from None
            out["qa"].append({**probe, "window_ids": [list(w.ids) for w in windows], "answers": answers})
    return out


def tolerance(quantize: str, fp32_backend: str = "onnx") -> dict[str, Any]:
    """The self-test's bound: the backend's fp32 atol, or the quantized accuracy thresholds."""
    from ..backends.catalog import backend  # the tolerance table lives once, in the catalog

    if quantize == "none":
        return {"kind": "atol", "atol": backend(fp32_backend).tolerance.atol}
    return {"kind": "quantized", **backend(f"onnx-{quantize}").tolerance.thresholds()}


def base_bundle(source: Converted, p: Plan, *, engine: str, runner: str, graphs: dict[str, str | None],
                pooling_in_graph: bool, tokenizer: str = TOKENIZER_FILE) -> dict[str, Any]:
    """The bundle.json facts shared by every target (probes, files and footprint are added later)."""
    spec = source.spec
    o = p.options
    return {
        "encoderkit_bundle": 1,
        "target": o.target,
        "name": p.name,
        "engine": engine,
        "runner": runner,
        "source": source.source,
        "model": {"arch": spec.arch, "hidden_size": spec.hidden_size, "num_layers": spec.num_layers,
                  "num_heads": spec.num_heads, "vocab_size": spec.vocab_size, "has_mlm_head": spec.has_mlm_head,
                  "labels": list(spec.labels) if {"classify", "ner"} & set(p.tasks) else []},
        "quantize": o.quantize,
        "tasks": list(p.tasks),
        "max_length": p.max_length,
        "pooling": {"default": o.pooling or "mean", "normalize": o.normalize, "in_graph": pooling_in_graph},
        "tokenizer": tokenizer,
        "special_tokens": {"pad": spec.pad_token_id, "cls": spec.cls_token_id, "sep": spec.sep_token_id,
                           "mask": spec.mask_token_id},
        "pad_token_id": spec.pad_token_id,
        "mask_token": spec.mask_token,
        "mask_token_id": spec.mask_token_id,
        "inputs": ["input_ids", "attention_mask"],
        "graphs": graphs,
    }


def file_table(root: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under ``root`` but bundle.json (which holds this table) and the
    temp dir's owner file (``io.atomic_dir`` removes it before the rename)."""
    return {p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in (BUNDLE_FILE, OWNER_FILE) and "node_modules" not in p.parts}


def write_bundle_json(root: Path, bundle: dict[str, Any]) -> None:
    (root / BUNDLE_FILE).write_text(json.dumps(bundle, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def run_self_test(root: Path, runner: str = "run.py", *, measure: bool = False) -> str:
    """Run the bundle's own runner (a fresh Python process, so its memory is its own).

    Raises:
        ParityError: the runner's self-test failed (its message).
    """
    cmd = [sys.executable, str(root / runner), "--self-test"] + (["--measure"] if measure else [])
    env = {**os.environ, "PYTHONPATH": ""}  # the runner must not lean on encoderkit
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
    if res.returncode != 0:
        msg = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ParityError(f"the packaged {runner} fails its self-test: {msg}")
    return res.stdout


def finish(root: Path, bundle: dict[str, Any], probes: dict[str, Any], quantize: str,
           say: Callable[[str], None], fp32_backend: str = "onnx") -> dict[str, Any]:
    """Add probes, tolerance and file hashes, run the self-test, then record the footprint."""
    bundle["probes"] = {**probes, "tolerance": tolerance(quantize, fp32_backend)}
    bundle["files"] = file_table(root)
    write_bundle_json(root, bundle)
    if (root / "run.py").is_file():  # every bundle carries run.py (web: beside its JS runner)
        say("self-test of the packaged runner ...")
        *lines, measured = run_self_test(root, measure=True).strip().splitlines()
        bundle["self_test"] = [ln for ln in lines if ln and ln != "self-test passed"]
        fp = json.loads(measured)
    else:
        fp = {}
    bundle["footprint"] = {"bundle_bytes": sum(m["bytes"] for m in bundle["files"].values()),
                           "model_bytes": sum(m["bytes"] for rel, m in bundle["files"].items()
                                              if rel.endswith((".onnx", ".data", ".ort", ".tflite", ".pb"))
                                              or "/variables/" in rel),
                           **fp, "measured_with": "run.py --self-test --measure (one text, after loading)"}
    write_bundle_json(root, bundle)
    return bundle


def package_with(fn: Callable[..., dict[str, Any]], converted: Path, out: Path, options: PackageOptions, *,
                 force: bool, progress: Callable[[str], None] | None) -> dict[str, Any]:
    """Open the source, resolve the plan, and run one target function inside an atomic directory."""
    from ..storage.files import refuse_overlap, refuse_special

    say = progress or (lambda msg: None)
    source = Converted.open(converted)
    refuse_overlap(out, [("converted model", converted)])  # --force would delete the source
    refuse_special(out)
    p = plan(source, options)
    with atomic_dir(out, force=force) as tmp:
        return fn(source, tmp, p, say)
