"""optimum's ONNX recipe as a benchmark peer: what a user who picks optimum instead of encoderkit writes.

Runs inside its own venv (`make optimum-venv`: optimum-onnx pins transformers < 4.58, encoderkit's
venv has transformers 5), so it imports nothing from encoderkit. From a Hugging Face checkpoint
(a converted directory's ``safetensors/``) it builds two systems:

- ``optimum-o2``:   ``ORTModelForFeatureExtraction`` export, then ``ORTOptimizer`` at O2 (fp32).
- ``optimum-int8``: the plain export quantized by ``ORTQuantizer`` with
  ``AutoQuantizationConfig.avx2(is_static=False)`` (dynamic int8). The plain export, not the O2
  graph: quantizing the O2 graph fails ONNX Runtime's shape inference.

Each embeds with the checkpoint's tokenizer, a fixed batch of 32 texts in input order (padding to
the batch's longest, truncation on) and mean pooling over the attention mask.

Two ways to run it:

    python optimum_peer.py CKPT TEXTS.json OUT.json [--repeats N] [--workdir DIR]
        one-shot: times each system (best of N), writes texts/s per system to OUT.json and the
        embeddings beside it (OUT.<system>.npy).
    python optimum_peer.py CKPT --serve [--workdir DIR]
        what ``encoderkit bench`` uses, so the peer is timed interleaved with every other system:
        after loading it prints one JSON line {"ready": ..., "systems": {...}} and then answers
        JSON lines on stdin, {"system": NAME, "texts": PATH, "save": PATH|null}, with
        {"ok": true, "n": count} (or {"error": "..."}) after embedding the texts of PATH (a JSON
        list; read once per path) and, if "save" is set, writing the embeddings there as .npy.
        Library output goes to stderr; stdout carries the protocol only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

BATCH = 32


def build(ckpt: Path, work: Path) -> dict:
    """Export, O2-optimize and quantize; returns {system: (model, load facts)} and the tokenizer."""
    from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig, OptimizationConfig
    from transformers import AutoTokenizer

    t0 = time.perf_counter()
    plain = work / "plain"
    model = ORTModelForFeatureExtraction.from_pretrained(ckpt, export=True)
    model.save_pretrained(plain)
    export_s = time.perf_counter() - t0

    t = time.perf_counter()
    o2 = work / "o2"
    ORTOptimizer.from_pretrained(model).optimize(OptimizationConfig(optimization_level=2), save_dir=o2)
    o2_s = time.perf_counter() - t

    t = time.perf_counter()
    q = work / "int8"
    quantizer = ORTQuantizer.from_pretrained(plain)
    quantizer.quantize(AutoQuantizationConfig.avx2(is_static=False, per_channel=False), save_dir=q)
    q_s = time.perf_counter() - t

    def load(d: Path):
        (onnx_file,) = [p for p in d.glob("*.onnx")]
        t = time.perf_counter()
        m = ORTModelForFeatureExtraction.from_pretrained(d, file_name=onnx_file.name)
        size = sum(p.stat().st_size for p in d.glob("*.onnx*")) / 1e6
        return m, time.perf_counter() - t, size

    tok = AutoTokenizer.from_pretrained(ckpt)
    m_o2, load_o2, size_o2 = load(o2)
    m_q, load_q, size_q = load(q)
    systems = {"optimum-o2": (m_o2, {"load_s": export_s + o2_s + load_o2, "size_mb": size_o2,
                                     "build": f"export {export_s:.1f}s + O2 {o2_s:.1f}s"}),
               "optimum-int8": (m_q, {"load_s": export_s + q_s + load_q, "size_mb": size_q,
                                      "build": f"export {export_s:.1f}s + avx2 dynamic int8 {q_s:.1f}s"})}
    return {"systems": systems, "tokenizer": tok}


def embed(model, tok, texts: list[str]):
    import numpy as np
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), BATCH):
            enc = tok(texts[i:i + BATCH], padding=True, truncation=True, return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"][:, :, None].to(h.dtype)
            out.append(((h * m).sum(1) / m.sum(1)).numpy())
    return np.concatenate(out).astype(np.float32)


def versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("optimum", "optimum-onnx", "onnxruntime", "transformers", "torch")}


def serve(ckpt: Path, work: Path) -> int:
    import numpy as np

    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # everything the libraries print goes to stderr
    built = build(ckpt, work)
    systems, tok = built["systems"], built["tokenizer"]
    proto.write(json.dumps({"ready": True, "versions": versions(),
                            "systems": {k: facts for k, (_, facts) in systems.items()}}) + "\n")
    texts_cache: dict[str, list[str]] = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            if req["system"] not in systems:
                raise KeyError(f"unknown system {req['system']!r}")
            texts = texts_cache.get(req["texts"])
            if texts is None:
                texts = texts_cache[req["texts"]] = json.loads(Path(req["texts"]).read_text())
            emb = embed(systems[req["system"]][0], tok, texts)
            if req.get("save"):
                np.save(req["save"], emb)
            reply = {"ok": True, "n": len(emb)}
        except Exception as e:  # noqa: BLE001 - reported to the bench, which lists the peer as failed
            reply = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        proto.write(json.dumps(reply) + "\n")
    return 0


def one_shot(ckpt: Path, texts_file: Path, out: Path, repeats: int, work: Path) -> int:
    import numpy as np

    texts = json.loads(texts_file.read_text()) if texts_file.suffix == ".json" else \
        [ln for ln in texts_file.read_text().splitlines() if ln.strip()]
    out.parent.mkdir(parents=True, exist_ok=True)
    built = build(ckpt, work)
    result = {"texts": len(texts), "batch": BATCH, "versions": versions(), "systems": {}}
    for name, (model, facts) in built["systems"].items():
        emb = embed(model, built["tokenizer"], texts[:2])  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            emb = embed(model, built["tokenizer"], texts)
            best = min(best, time.perf_counter() - t)
        npy = out.with_name(f"{out.stem}.{name}.npy")
        np.save(npy, emb)
        result["systems"][name] = {**facts, "best_s": best, "texts_per_s": len(texts) / best,
                                   "embeddings": str(npy)}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: round(v["texts_per_s"], 2) for k, v in result["systems"].items()}))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a Hugging Face checkpoint dir (a convert output's safetensors/)")
    p.add_argument("texts", type=Path, nargs="?", help="JSON list of texts (or one text per line)")
    p.add_argument("out", type=Path, nargs="?", help="result JSON (embeddings beside it as .npy)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--serve", action="store_true")
    p.add_argument("--workdir", type=Path, default=None, help="where the ONNX files go (default: a temp dir)")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="optimum-peer-") as tmp:
        work = a.workdir or Path(tmp)
        if a.serve:
            return serve(a.checkpoint, work)
        if a.texts is None or a.out is None:
            p.error("texts and out are required without --serve")
        return one_shot(a.checkpoint, a.texts, a.out, a.repeats, work)


if __name__ == "__main__":
    sys.exit(main())
