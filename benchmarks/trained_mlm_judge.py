"""Quantized fill-mask judged on a TRAINED masked LM, not on random weights (whose flat
distributions make "top-1 agreement 0.88" meaningless).

1. corpus: the English prose sentences of the Python standard library's docstrings (parsed with
   ``ast``, nothing imported; code, doctests and lists dropped), split train / held-out by a hash
   of each sentence (3 % held out): the same text on any machine with the same Python.
2. model: a small RoBERTa (init-random's ``small`` shape: 4 layers, hidden 128, 4 heads) with a
   byte-level BPE trained on the training sentences, pretrained from scratch with
   ``encoderkit finetune --task mlm --method full`` (dynamic masking); or, with ``--start MODEL``,
   pretraining continued from a trained encoder (e.g. ``minilm``, which ships without an MLM head).
3. judge: the trained checkpoint is converted with every quantized variant (ONNX int8 token,
   dynamic and static; ONNX fp16; CTranslate2 int8) and loaded as torch-bf16; each held-out
   sentence gets one word masked at a time (every third alphabetic word), and each variant's
   top-1 / top-5 is compared with torch fp32's. Also printed: how often torch's top-1 is the masked
   word, against always answering the training corpus's most frequent word (the model is
   trained, so agreement means something).

    PYTHONPATH=. python benchmarks/trained_mlm_judge.py WORK [--epochs 40] [--start minilm --epochs 2 --lr 1e-4]

Writes WORK/judge.md (and .json); the README quotes it.
"""
from __future__ import annotations

import argparse
import ast
import collections
import dataclasses
import hashlib
import json
import os
import re
import sys
import sysconfig
import time
from pathlib import Path

SKIP = ("test/", "idlelib/idle_test/", "lib2to3/tests/", "tkinter/test/", "unittest/test/", "site-packages/")


def stdlib_sentences() -> list[str]:
    """Prose sentences of the standard library's docstrings, in file order, without duplicates."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out: dict[str, None] = {}
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root).as_posix()
        if rel.startswith(SKIP) or "/test" in rel:
            continue
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            for para in re.split(r"\n\s*\n", doc or ""):
                lines = [ln.strip() for ln in para.splitlines()]
                if any(ln.startswith((">>>", "...", "$", "-", "*", "|", ":")) for ln in lines):
                    continue  # doctests, lists, tables, field lists
                for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(lines)):
                    words = s.split()
                    if not 6 <= len(words) <= 60 or not s.endswith("."):
                        continue
                    if sum(w.strip(",.;:()'\"").isalpha() for w in words) / len(words) < 0.85:
                        continue
                    if re.search(r"[{}\[\]=<>_`@#\\]|\w\(", s):  # code
                        continue
                    out[s] = None
    return list(out)


def held_out(s: str) -> bool:
    return hashlib.sha256(s.encode()).digest()[0] < 8  # 8/256: about 3 %


def build_checkpoint(train: list[str], out: Path, vocab: int, seed: int) -> None:
    """init-random's small roberta, its tokenizer trained on ``train`` with ``vocab`` entries."""
    from encoderkit.storage.random_init import random_spec, write_random_checkpoint
    from encoderkit.storage.random_tokenizers import build_bpe_tokenizer

    spec = random_spec("small", "roberta")
    spec = dataclasses.replace(spec, vocab_size=vocab, mask_token_id=vocab - 1)
    write_random_checkpoint(out, spec, build_bpe_tokenizer(vocab, seed, spec.max_tokens_per_text, lines=train),
                            seed=seed, force=True, manifest={"size": "small", "arch": "roberta", "seed": seed, "head": "mlm",
                                                             "tokenizer": "BPE trained on the stdlib docstrings"})


def masked_probes(sentences: list[str], mask: str) -> tuple[list[str], list[str]]:
    texts, words = [], []
    for line in sentences:
        ws = line.split()
        for i in range(1, len(ws), 3):
            if ws[i].isalpha():
                texts.append(" ".join(ws[:i] + [mask] + ws[i + 1:]))
                words.append(ws[i].lower())
    return texts, words


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("work")
    p.add_argument("--epochs", type=float, default=30)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", default=None,
                   help="continue pretraining this checkpoint (e.g. minilm: a trained encoder, fresh MLM head) "
                        "instead of a small RoBERTa from scratch")
    p.add_argument("--method", default="full", help="finetune --method (full, or freeze with --unfreeze-top)")
    p.add_argument("--unfreeze-top", type=int, default=0)
    a = p.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    from encoderkit.core.logs import captured

    with captured() as io:  # third-party warnings to a log file, as the CLI does; our lines to the terminal
        run(a, work, lambda *x: print(*x, file=io.out))


def run(a: argparse.Namespace, work: Path, say) -> None:
    import encoderkit
    from encoderkit.backends.catalog import BACKENDS
    from encoderkit.conversion import convert
    from encoderkit.finetune import finetune

    load0 = os.getloadavg()
    sents = stdlib_sentences()
    train = [s for s in sents if not held_out(s)]
    test = [s for s in sents if held_out(s)]
    (work / "train.txt").write_text("\n".join(train) + "\n")
    (work / "test.txt").write_text("\n".join(test) + "\n")
    say(f"corpus: {len(sents)} sentences of Python {sys.version.split()[0]}'s stdlib docstrings "
          f"({sum(map(len, sents)) / 1e6:.2f} MB); train {len(train)}, held out {len(test)}")

    trained = work / "mlm"
    if not (trained / "manifest.json").is_file():
        start = a.start
        if start is None:
            build_checkpoint(train, work / "init", a.vocab, a.seed)
            start = work / "init"
        t = time.perf_counter()
        finetune(start, work / "train.txt", trained, task="mlm", method=a.method, eval_data=work / "test.txt",
                 epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, seed=a.seed, force=True,
                 unfreeze_top=a.unfreeze_top)
        say(f"trained in {time.perf_counter() - t:.0f} s")

    ref_rt = encoderkit.load(trained)
    texts, words = masked_probes(test, ref_rt.tokenizer.mask_token)
    ref = ref_rt.fill_mask(texts, top_k=5)
    ref_top = [r[0][0]["token_str"].strip().lower() for r in ref]
    acc = sum(t == w for t, w in zip(ref_top, words)) / len(texts)
    acc5 = sum(w in {x["token_str"].strip().lower() for x in r[0]} for r, w in zip(ref, words)) / len(texts)
    freq = collections.Counter(w.lower() for s in train for w in s.split() if w.isalpha())
    top_word, _ = freq.most_common(1)[0]
    base = sum(w == top_word for w in words) / len(texts)

    # every quantized variant; no gate (the point is to measure each, including one it would refuse)
    variants: dict[str, tuple[Path, str]] = {}
    for mode in ("token", "dynamic", "static"):
        d = work / f"conv-{mode}"
        if not (d / "manifest.json").is_file():
            fmts = ["safetensors", "onnx"] + (["ctranslate2"] if mode == "token" else [])
            convert(trained, fmts, d, quantize="int8,fp16" if mode == "token" else "int8", int8_mode=mode,
                    validate=False, force=d.exists())
        variants[f"onnx-int8 ({mode})"] = (d, "onnx-int8")
    token = work / "conv-token"
    variants |= {"onnx-fp16": (token, "onnx-fp16"), "ctranslate2-int8": (token, "ctranslate2-int8"),
                 "torch-bf16": (token, "torch-bf16")}
    rows = {}
    for label, (d, backend) in variants.items():
        if backend not in BACKENDS or backend not in encoderkit.backends.loading.available_backends(d):
            continue
        got = encoderkit.load(d, backend).fill_mask(texts, top_k=5)
        top1 = sum(g[0][0]["token"] == r[0][0]["token"] for g, r in zip(got, ref)) / len(texts)
        top5 = sum(len({x["token"] for x in g[0]} & {x["token"] for x in r[0]}) / 5
                   for g, r in zip(got, ref)) / len(texts)
        right = sum(g[0][0]["token_str"].strip().lower() == w for g, w in zip(got, words)) / len(texts)
        rows[label] = {"top1_agreement": top1, "top5_overlap": top5, "accuracy": right}
    load1 = os.getloadavg()
    spec = ref_rt.spec
    what = (f"small RoBERTa ({spec.num_layers} layers, hidden {spec.hidden_size}, BPE {spec.vocab_size}) "
            "pretrained from scratch" if a.start is None else
            f"{a.start} ({spec.arch}, {spec.num_layers} layers, hidden {spec.hidden_size}) with a fresh MLM "
            "head, pretraining continued")
    md = [f"# Quantized fill-mask on a trained masked LM ({len(texts)} masked words)", "",
          f"Model: {what} ({a.epochs:g} epochs, `finetune --task mlm --method {a.method}`"
          f"{f' --unfreeze-top {a.unfreeze_top}' if a.unfreeze_top else ''}, lr {a.lr:g}) on {len(train)} sentences of the "
          f"Python {sys.version.split()[0]} stdlib docstrings; judged on {len(test)} held-out sentences. "
          f"Load average {load0[0]:.1f} before, {load1[0]:.1f} after.", "",
          f"torch fp32: top-1 = the masked word {acc:.3f}, in its top-5 {acc5:.3f}; always answering "
          f"the most frequent training word ({top_word!r}): {base:.3f}.", "",
          "| backend | top-1 agreement with torch fp32 | top-5 overlap with torch fp32 | top-1 = masked word |",
          "|---|---|---|---|"]
    md += [f"| {k} | {v['top1_agreement']:.3f} | {v['top5_overlap']:.3f} | {v['accuracy']:.3f} |"
           for k, v in rows.items()]
    (work / "judge.md").write_text("\n".join(md) + "\n")
    (work / "judge.json").write_text(json.dumps({"masked": len(texts), "torch_top1_accuracy": acc,
                                                 "torch_top5_accuracy": acc5, "baseline": base,
                                                 "baseline_word": top_word, "rows": rows,
                                                 "load": [load0, load1]}, indent=2) + "\n")
    say("\n".join(md))


if __name__ == "__main__":
    main()
