"""Which int8 scheme keeps the real MiniLM accurate: simulated exactly, in torch, before any ONNX.

Every nn.Linear of all-MiniLM-L6-v2 (through encoderkit's torch runtime, so batching is the same
as the real backends') is replaced by integer arithmetic: s8 weights per output channel, u8
activations quantized per tensor (ONNX Runtime's DynamicQuantizeLinear), per token symmetric
(CTranslate2's scheme) or per token asymmetric (--int8-mode token), optionally after SmoothQuant
smoothing (per-channel factors, powers of two, calibrated on the shipped texts like the converter)
of chosen projection groups. ``--emulate-vpmaddubsw`` adds what x86 CPUs without VNNI compute:
ONNX Runtime's u8 x s8 kernel there (vpmaddubsw) sums the products of adjacent k in int16 with
saturation; the difference is added exactly for every pair of weights that can overflow.

Accuracy: cosine of mean-pooled, normalised embeddings vs sentence-transformers on the varied text
set of benchmarks/minilm_texts.py.

    python -m benchmarks.int8_schemes
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
GROUPS = {"QKV": lambda g: g.endswith("attention.self"), "O": lambda g: g.endswith("attention.output.dense"),
          "FFN1": lambda g: g.endswith("intermediate.dense"),
          "FFN2": lambda g: g.endswith("output.dense") and "attention" not in g}
# (name, activation scheme per group ("tensor" | "token-sym" | "token-asym"), smoothed groups, weight bits)
SCHEMES = [
    ("weights only (s8 per channel), fp32 activations", None, (), 8),
    ("per tensor everywhere (ORT dynamic, QKV included)", "tensor", (), 8),
    ("per token symmetric (CTranslate2)", "token-sym", (), 8),
    ("per token symmetric + smoothing QKV, FFN1", "token-sym", ("QKV", "FFN1"), 8),
    ("per token asymmetric", "token-asym", (), 8),
    ("per token asymmetric + smoothing QKV, FFN1", "token-asym", ("QKV", "FFN1"), 8),
    ("per token asymmetric + smoothing everywhere", "token-asym", ("QKV", "O", "FFN1", "FFN2"), 8),
    ("token mode: per token asym + smoothing QKV, FFN1; O per tensor", "token-mode", ("QKV", "FFN1"), 8),
    ("token mode with 7-bit weights (reduce_range)", "token-mode", ("QKV", "FFN1"), 7),
    ("token mode, O per token too", "token-asym", ("QKV", "FFN1"), 8),
    ("token mode but FFN2 per tensor", "token-mode-ffn2-tensor", ("QKV", "FFN1"), 8),
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--emulate-vpmaddubsw", action="store_true", help="also run the chosen schemes as non-VNNI x86 computes them")
    p.add_argument("--name", default="minilm")
    a = p.parse_args(argv)
    import torch
    from sentence_transformers import SentenceTransformer

    import encoderkit
    from encoderkit.storage.checkpoint import packaged_model_dir
    from encoderkit.backends.onnx.static import HOLD_OUT_EVERY, shipped_texts

    from .minilm_texts import varied_texts

    rt = encoderkit.load("minilm", device="cpu")
    texts, _ = varied_texts(rt.tokenizer)
    ref = SentenceTransformer(str(packaged_model_dir("minilm")), device="cpu").encode(
        texts, normalize_embeddings=True, batch_size=32)
    cal = shipped_texts(rt.tokenizer.mask_token)
    random.Random(0).shuffle(cal)
    cal = [t for i, t in enumerate(cal) if i % HOLD_OUT_EVERY][:240]  # the converter's calibration split
    lins = {n: m for n, m in rt.model.named_modules() if isinstance(m, torch.nn.Linear)}
    groups: dict[str, list[str]] = {}
    for n in lins:
        groups.setdefault(n.rsplit(".", 1)[0] if n.endswith((".query", ".key", ".value")) else n, []).append(n)
    kind = {g: next(k for k, f in GROUPS.items() if f(g)) for g in groups}
    amax: dict[str, torch.Tensor] = {}
    hooks = []
    for g, ns in groups.items():
        def stat(mod, args, g=g):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).abs().amax(0)
            amax[g] = torch.maximum(amax[g], x) if g in amax else x
        hooks.append(lins[ns[0]].register_forward_pre_hook(stat))
    with torch.no_grad():
        rt.embed(cal)
    for h in hooks:
        h.remove()

    def saturation(q: torch.Tensor, wq: torch.Tensor) -> torch.Tensor:
        """sum over adjacent-k weight pairs that can overflow int16 of (sat16(p) - p)."""
        w0, w1 = wq[0::2], wq[1::2]
        risky = ((w0.sign() == w1.sign()) & ((w0.abs() + w1.abs()) * 255 > 32767)).nonzero().tolist()
        corr = torch.zeros(q.shape[0], wq.shape[1], dtype=torch.int64)
        for i, n in risky:
            s = q[:, 2 * i] * w0[i, n] + q[:, 2 * i + 1] * w1[i, n]
            corr[:, n] += s.clamp(-32768, 32767) - s
        return corr

    def run(act: str | None, smoothed: tuple[str, ...], bits: int, avx2: bool) -> np.ndarray:
        hooks = []
        qmax = 2 ** (bits - 1) - 1
        for g, ns in groups.items():
            smooth = None
            if kind[g] in smoothed:
                wmax = torch.stack([lins[n].weight.detach().abs().amax(0) for n in ns]).amax(0).clamp_min(1e-5)
                smooth = torch.exp2(torch.round(torch.log2((amax[g].clamp_min(1e-5) ** 0.5 / wmax ** 0.5).clamp_min(1e-5))))
            mode = act
            if act == "token-mode":
                mode = "tensor" if kind[g] == "O" else "token-asym"
            elif act == "token-mode-ffn2-tensor":
                mode = "tensor" if kind[g] in ("O", "FFN2") else "token-asym"
            for n in ns:
                w = lins[n].weight.detach().T * (smooth[:, None] if smooth is not None else 1)
                sw = w.abs().amax(0).clamp_min(1e-12) / qmax
                wq = (w / sw).round().clamp(-qmax, qmax).to(torch.int64)

                def fwd(mod, args, out, wq=wq, sw=sw, smooth=smooth, mode=mode, b=lins[n].bias.detach()):
                    x = args[0]
                    shape = x.shape
                    x = x.reshape(-1, shape[-1]) / (smooth if smooth is not None else 1)
                    if mode is None:
                        y = (x.double() @ (wq.double() * sw.double())).float() + b
                        return y.reshape(*shape[:-1], -1)
                    if mode == "tensor":
                        lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
                        sc = torch.full((x.shape[0], 1), (hi - lo) / 255 or 1.0)
                        zp = torch.round(-lo / sc)
                    elif mode == "token-sym":
                        sc = x.abs().amax(1, keepdim=True).clamp_min(1e-7) / 127
                        zp = torch.full_like(sc, 128.0)
                    else:
                        lo, hi = x.amin(1, keepdim=True).clamp(max=0), x.amax(1, keepdim=True).clamp(min=0)
                        sc = (hi - lo).clamp_min(1e-7) / 255
                        zp = torch.round(-lo / sc)
                    q = (torch.round(x / sc) + zp).clamp(0, 255).to(torch.int64)
                    acc = (q - zp.to(torch.int64)).double() @ wq.double()
                    if avx2:
                        acc = acc + saturation(q, wq).double()
                    y = (acc * sc.double() * sw.double()).float() + b
                    return y.reshape(*shape[:-1], -1)
                hooks.append(lins[n].register_forward_hook(fwd))
        try:
            with torch.no_grad():
                e = rt.embed(texts, normalize=True)
        finally:
            for h in hooks:
                h.remove()
        return (e * ref).sum(1)

    rows = []
    for name, act, smoothed, bits in SCHEMES:
        cos = run(act, smoothed, bits, False)
        rows.append((name, "VNNI / exact", cos))
        print(f"{name:70s} min {cos.min():.4f} mean {cos.mean():.5f} < 0.99: {(cos < 0.99).sum()}", flush=True)
    if a.emulate_vpmaddubsw:
        for name, act, smoothed, bits in (SCHEMES[1], SCHEMES[7], SCHEMES[8]):
            cos = run(act, smoothed, bits, True)
            rows.append((name, "non-VNNI x86 (vpmaddubsw) emulated", cos))
            print(f"{name} [non-VNNI] min {cos.min():.4f} mean {cos.mean():.5f} < 0.99: {(cos < 0.99).sum()}", flush=True)
    md = [f"# int8 schemes on the real all-MiniLM-L6-v2, simulated in integers ({len(texts)} varied texts)", "",
          f"`python -m benchmarks.int8_schemes{' --emulate-vpmaddubsw' if a.emulate_vpmaddubsw else ''}`: cosine of "
          "mean-pooled embeddings vs sentence-transformers; s8 weights per output channel in every row "
          "(7-bit where said). Smoothing: SmoothQuant factors (alpha 0.5, powers of two) calibrated on the "
          "converter's calibration texts.", "",
          "| scheme | kernel | min cosine | mean | texts < 0.99 |", "|---|---|---|---|---|"]
    md += [f"| {n} | {k} | {c.min():.4f} | {c.mean():.5f} | {(c < 0.99).sum()} |" for n, k, c in rows]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"int8_schemes_{a.name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
