"""Why Flax embeds slower than torch: a breakdown on a random roberta-base (the embed workload).

Everything timed side by side in one process with interleaved repeats (the machine is shared:
read ratios, not absolute times):

1. the batch plans: torch pads each batch to its own longest text; flax pads lengths up to shape
   buckets and batch sizes to bucket sizes. Tokens computed, batches, distinct compiled shapes;
2. end to end ``embed``: torch vs flax (flax's warm-up, i.e. its compilations, timed apart);
3. the same work split: (a) torch at its own batch shapes, (b) torch at flax's padded shapes,
   (c) flax's jitted forward alone at those shapes (block_until_ready), (d) flax's host side
   (padding into bucket arrays, device->host copy, slicing): (b)/(a) is the cost of the padding,
   (c)/(b) the compute gap of XLA:CPU vs torch on identical shapes, the rest overhead;
4. the blocks of one layer at the dominant batch shape, jax vs torch: the four GEMMs, erf GELU,
   residual + LayerNorm, attention core;
5. knobs, each in its own process (XLA_FLAGS must be set before JAX starts) with torch timed in
   the same process: XLA flags (oneDNN, XNNPACK, Eigen threading, fast math, vector width) and the
   runtime's bucket steps (exact lengths, no bucketing).

    python -m encoderkit.cli init-random --size base /tmp/prof-rb-ckpt
    python -m encoderkit.cli convert /tmp/prof-rb-ckpt --to safetensors,flax --out /tmp/prof-rb
    python -m benchmarks.profile_flax /tmp/prof-rb [--texts 256] [--repeats 3] [--threads 1] \\
        [--out benchmarks/results/profile_flax.md]

On a loaded shared machine prefix ``taskset -c 1`` and pass ``--threads 1``: with two threads the
torch pool stalls whenever one thread loses its core, which decides the ratio more than the code.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# XLA flags to try (name -> XLA_FLAGS value); those jaxlib does not know end their process with
# "Unknown flag" and are reported as such.
FLAG_SETS = {
    "default (dots as YNNPACK fusions)": "",
    "--xla_cpu_experimental_ynn_fusion_type= (dots on XLA's own/Eigen path)": "--xla_cpu_experimental_ynn_fusion_type=",
    "ynn off + --xla_cpu_multi_thread_eigen=false": "--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_multi_thread_eigen=false",
    "--xla_cpu_enable_fast_math=true": "--xla_cpu_enable_fast_math=true",
    "--xla_cpu_prefer_vector_width=512": "--xla_cpu_prefer_vector_width=512",
}
# Probed and left out: --xla_cpu_use_onednn, --xla_cpu_use_xnnpack, --xla_cpu_experimental_xnn_fusion_type=dot,
# --xla_cpu_experimental_onednn_fusion_type=dot and --xla_cpu_use_thunk_runtime=false are accepted by
# jaxlib 0.10.2 but leave the optimized HLO of a dot unchanged (still a __ynn_fusion).


# Ratios taken within each repeat (the load of the moment cancels), median over repeats.
PAIRS = (("torch embed (end to end)", "flax embed (end to end)"),
         ("torch forward, flax's padded shapes", "torch forward, own shapes"),
         ("flax jitted forward only (device arrays in, block_until_ready)", "torch forward, flax's padded shapes"),
         ("flax jitted forward only (device arrays in, block_until_ready)", "torch forward, own shapes"),
         ("flax hidden_layer (pad + call + copy out + slice)", "flax jitted forward only (device arrays in, block_until_ready)"))


def median_time(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def load(directory: Path, threads: int | None):
    import torch

    import encoderkit

    if threads:
        torch.set_num_threads(threads)
    rt_t = encoderkit.load(directory, "torch")
    rt_f = encoderkit.load(directory, "flax")
    return rt_t, rt_f


def workload(rt, n: int) -> list[str]:
    from encoderkit.bench import fit_workload, read_workload

    texts, _ = fit_workload(read_workload("embed_corpus", rt.tokenizer.mask_token, limit=n), rt.tokenizer,
                            need_mask=False)
    return texts


def plans(rt_t, rt_f, texts):
    ids = rt_t.tokenizer.encode(texts, truncate=True)
    real = sum(len(x) for x in ids)
    t_shapes = [tuple(m.shape) for _, m, _ in ((b, i, m) for b, i, m in rt_t.batches(ids))]
    f_shapes = []
    for _, i, m in rt_f.batches(ids):
        ids_p, *_ = rt_f._padded(i, m)
        f_shapes.append(ids_p.shape)
    return ids, real, t_shapes, f_shapes


def set_buckets(rt_f, mode: str) -> None:
    """The runtime's shape buckets: as shipped, or exact lengths (one compile per length)."""
    if mode == "exact":
        rt_f.buckets = list(range(1, rt_f.spec.max_tokens_per_text + 1))
    elif mode == "fine":  # steps of 4 up to 64 (shipped: 4 up to 32, then 8), the shipped steps above
        rt_f.buckets = sorted({b for b in rt_f.buckets if b > 64} | set(range(4, 65, 4)))


# ----------------------------------------------------------------------------- 1-3 main breakdown
def breakdown(rt_t, rt_f, texts, repeats: int) -> dict:
    import jax
    import torch

    ids, real, t_shapes, f_shapes = plans(rt_t, rt_f, texts)
    c0 = rt_f.compilations
    t0 = time.perf_counter()
    rt_f.embed(texts, truncate=True)
    warm_f = time.perf_counter() - t0
    compiled = rt_f.compilations - c0
    t0 = time.perf_counter()
    rt_t.embed(texts, truncate=True)
    warm_t = time.perf_counter() - t0

    # inputs for the split: every planned batch, padded as each backend pads it
    t_batches = [(i, m) for _, i, m in rt_t.batches(ids)]
    f_batches = []
    for _, i, m in rt_f.batches(ids):
        pi, pm, pt, b, t = rt_f._padded(i, m)
        f_batches.append((i, m, pi, pm, pt))
    f_dev = [tuple(jax.device_put(x) for x in (pi, pm, pt)) for _, _, pi, pm, pt in f_batches]

    @torch.inference_mode()
    def torch_at(shapes_batches):
        for i, m in shapes_batches:
            rt_t.encoder(input_ids=torch.from_numpy(i), attention_mask=torch.from_numpy(m),
                         token_type_ids=torch.zeros_like(torch.from_numpy(i))).last_hidden_state.numpy()

    t_own = [(np.asarray(i, np.int64), np.asarray(m, np.int64)) for i, m in t_batches]
    t_flaxshape = [(pi.astype(np.int64), pm.astype(np.int64)) for _, _, pi, pm, _ in f_batches]

    def flax_compute():
        for pi, pm, pt in f_dev:
            rt_f._run(rt_f.params, pi, pm, pt, "last").block_until_ready()

    def flax_host():  # the runtime's padding, the call, the device->host copy and slicing
        for i, m, *_ in f_batches:
            rt_f.hidden_layer(i, m, rt_f.spec.num_layers)

    def tok():
        rt_t.tokenizer.encode(texts, truncate=True)

    systems = {"torch embed (end to end)": lambda: rt_t.embed(texts, truncate=True),
               "flax embed (end to end)": lambda: rt_f.embed(texts, truncate=True),
               "torch forward, own shapes": lambda: torch_at(t_own),
               "torch forward, flax's padded shapes": lambda: torch_at(t_flaxshape),
               "flax jitted forward only (device arrays in, block_until_ready)": flax_compute,
               "flax hidden_layer (pad + call + copy out + slice)": flax_host,
               "tokenization": tok}
    for fn in systems.values():
        fn()
    times = {k: [] for k in systems}
    for r in range(repeats):
        for k, fn in systems.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
        print(f"  repeat {r + 1}/{repeats}", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    pairs = {f"{a} / {b}": statistics.median(x / y for x, y in zip(times[a], times[b])) for a, b in PAIRS}
    return {"paired_ratios": pairs, "texts": len(texts), "real_tokens": real,
            "torch_batches": len(t_shapes), "torch_tokens": sum(b * t for b, t in t_shapes),
            "flax_batches": len(f_shapes), "flax_tokens": sum(b * t for b, t in f_shapes),
            "torch_shapes": t_shapes, "flax_shapes": f_shapes,
            "flax_distinct_shapes": len(set(f_shapes)), "flax_compilations": compiled,
            "warmup_s": {"flax": warm_f, "torch": warm_t}, "median_s": med,
            "times_s": times}


# ----------------------------------------------------------------------------- 4 blocks of a layer
def blocks(spec, shape, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp
    import torch
    import torch.nn.functional as F  # noqa: N812

    b, t = shape
    h, ff, nh = spec.hidden_size, spec.intermediate_size, spec.num_heads
    m = b * t
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, h)).astype(np.float32)
    xf = rng.standard_normal((m, ff)).astype(np.float32)
    w = {"hh": rng.standard_normal((h, h)).astype(np.float32) * .02,
         "hf": rng.standard_normal((h, ff)).astype(np.float32) * .02,
         "fh": rng.standard_normal((ff, h)).astype(np.float32) * .02}
    bias_h, bias_f = np.zeros(h, np.float32), np.zeros(ff, np.float32)
    q = rng.standard_normal((b, t, nh, h // nh)).astype(np.float32)
    amask = np.zeros((b, 1, 1, t), np.float32)
    hp = jax.lax.Precision.HIGHEST
    jx = {k: jnp.asarray(v) for k, v in w.items()}
    jxx, jxf, jq, jm = jnp.asarray(x), jnp.asarray(xf), jnp.asarray(q), jnp.asarray(amask)
    jbh, jbf = jnp.asarray(bias_h), jnp.asarray(bias_f)
    tx, txf, tq = torch.from_numpy(x), torch.from_numpy(xf), torch.from_numpy(q).transpose(1, 2).contiguous()
    tm = torch.from_numpy(amask)
    tw = {k: torch.from_numpy(v.T.copy()) for k, v in w.items()}  # nn.Linear layout [out, in]
    tbh, tbf = torch.from_numpy(bias_h), torch.from_numpy(bias_f)

    def attn_j(q, mask):
        s = jnp.einsum("bqhd,bkhd->bhqk", q, q, precision=hp) / 8.0 + mask
        return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(s, -1), q, precision=hp)

    def ln_j(y, r):
        z = y + r
        mu = z.mean(-1, keepdims=True)
        var = ((z - mu) ** 2).mean(-1, keepdims=True)
        return (z - mu) * jax.lax.rsqrt(var + 1e-5)

    jf = {"GEMM h x h (+bias), x4 per layer: Q, K, V, out": jax.jit(lambda a, w, b: jnp.dot(a, w, precision=hp) + b),
          "GEMM h x 4h (+bias): FFN in": jax.jit(lambda a, w, b: jnp.dot(a, w, precision=hp) + b),
          "GEMM 4h x h (+bias): FFN out": jax.jit(lambda a, w, b: jnp.dot(a, w, precision=hp) + b),
          "erf GELU on [m, 4h]": jax.jit(lambda a: jax.nn.gelu(a, approximate=False)),
          "residual + LayerNorm on [m, h]": jax.jit(ln_j),
          "attention core (scores, softmax, context)": jax.jit(attn_j)}
    jargs = {"GEMM h x h (+bias), x4 per layer: Q, K, V, out": (jxx, jx["hh"], jbh),
             "GEMM h x 4h (+bias): FFN in": (jxx, jx["hf"], jbf), "GEMM 4h x h (+bias): FFN out": (jxf, jx["fh"], jbh),
             "erf GELU on [m, 4h]": (jxf,), "residual + LayerNorm on [m, h]": (jxx, jxx),
             "attention core (scores, softmax, context)": (jq, jm)}
    tf = {"GEMM h x h (+bias), x4 per layer: Q, K, V, out": lambda: F.linear(tx, tw["hh"], tbh),
          "GEMM h x 4h (+bias): FFN in": lambda: F.linear(tx, tw["hf"], tbf),
          "GEMM 4h x h (+bias): FFN out": lambda: F.linear(txf, tw["fh"], tbh),
          "erf GELU on [m, 4h]": lambda: F.gelu(txf),
          "residual + LayerNorm on [m, h]": lambda: F.layer_norm(tx + tx, (h,)),
          "attention core (scores, softmax, context)": lambda: F.scaled_dot_product_attention(tq, tq, tq, tm)}
    per_layer = {"GEMM h x h (+bias), x4 per layer: Q, K, V, out": 4}
    n = 10
    out = {}
    with torch.inference_mode():
        for k in jf:
            jf[k](*jargs[k]).block_until_ready()
            tf[k]()

            def jrun(k=k):
                for _ in range(n):
                    r = jf[k](*jargs[k])
                r.block_until_ready()

            def trun(k=k):
                for _ in range(n):
                    tf[k]()
            tj, tt = [], []
            for _ in range(max(repeats, 5)):
                tj.append(median_time(jrun, 1) / n)
                tt.append(median_time(trun, 1) / n)
            out[k] = {"jax_ms": statistics.median(tj) * 1e3, "torch_ms": statistics.median(tt) * 1e3,
                      "ratio": statistics.median(x / y for x, y in zip(tj, tt)),
                      "per_layer": per_layer.get(k, 2 if "LayerNorm" in k else 1)}
    return out


def compiled_dots(spec) -> dict:
    """How XLA:CPU lowers a Dense: what the optimized HLO of one [m, h] x [h, 4h] dot names."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((1024, spec.hidden_size), jnp.float32)
    w = jnp.ones((spec.hidden_size, spec.intermediate_size), jnp.float32)
    text = jax.jit(lambda a, w: jnp.dot(a, w, precision=jax.lax.Precision.HIGHEST)).lower(a, w).compile().as_text()
    lines = [ln.strip() for ln in text.splitlines() if (" dot(" in ln or "custom-call" in ln or "fusion(" in ln
                                                         or "custom_call_target" in ln) and "ENTRY" not in ln]
    return {"hlo": lines[:6]}


# ----------------------------------------------------------------------------- 5 knobs (subprocess)
def knob_worker(directory: Path, n_texts: int, repeats: int, buckets: str, threads: int | None) -> dict:
    rt_t, rt_f = load(directory, threads)
    set_buckets(rt_f, buckets)
    texts = workload(rt_t, n_texts)
    c0 = rt_f.compilations
    t0 = time.perf_counter()
    rt_f.embed(texts, truncate=True)
    warm = time.perf_counter() - t0
    rt_t.embed(texts, truncate=True)
    ft, tt, ratio = [], [], []
    for _ in range(repeats):  # paired: each repeat's ratio cancels the machine's load at that moment
        t0 = time.perf_counter()
        rt_t.embed(texts, truncate=True)
        tt.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        rt_f.embed(texts, truncate=True)
        ft.append(time.perf_counter() - t0)
        ratio.append(tt[-1] / ft[-1])
    diff = float(np.abs(rt_f.embed(texts[:16], truncate=True) - rt_t.embed(texts[:16], truncate=True)).max())
    return {"torch_s": statistics.median(tt), "flax_s": statistics.median(ft), "warmup_s": warm,
            "compilations": rt_f.compilations - c0, "max_abs_diff": diff,
            "flax_over_torch_speed": statistics.median(ratio), "ratios": ratio}


def run_knobs(directory: Path, n_texts: int, repeats: int, threads: int | None) -> dict:
    rows = {}
    variants = [(name, flags, "shipped") for name, flags in FLAG_SETS.items()] + \
               [("buckets: exact lengths (no bucketing)", "", "exact"), ("buckets: steps of 4 up to 64", "", "fine")]
    for name, flags, buckets in variants:
        print(f"knob: {name}", file=sys.stderr, flush=True)
        env = {**os.environ, "XLA_FLAGS": flags}
        cmd = [sys.executable, "-m", "benchmarks.profile_flax", str(directory), "--worker", "--texts", str(n_texts),
               "--repeats", str(repeats), "--buckets", buckets] + (["--threads", str(threads)] if threads else [])
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        if p.returncode:
            err = [ln for ln in p.stderr.splitlines() if ln.strip()]
            rows[name] = {"error": next((ln for ln in err if "Unknown flag" in ln), err[-1] if err else "?")[-160:]}
        else:
            rows[name] = json.loads(p.stdout.strip().splitlines()[-1])
    return rows


# ----------------------------------------------------------------------------- report
def render(facts, bd, blk, blk_shape, dots, knobs, a) -> str:
    med = bd["median_s"]
    L = ["# Profile: Flax vs torch on the embed workload (random roberta-base)", "",
         f"Machine: {facts['cpu']}, {facts['cores']} cores, shared with other jobs (read ratios, not "
         f"absolute times). jax {facts['jax']}, torch {facts['torch']} ({facts['torch_threads']} threads), "
         f"XLA devices: {facts['devices']}. Median of {a.repeats} interleaved repeats.", "",
         "Command:", "", "```",
         "python -m encoderkit.cli init-random --size base /tmp/prof-rb-ckpt",
         "python -m encoderkit.cli convert /tmp/prof-rb-ckpt --to safetensors,flax --out /tmp/prof-rb",
         f"python -m benchmarks.profile_flax /tmp/prof-rb --texts {a.texts} --repeats {a.repeats} "
         f"--knob-texts {a.knob_texts}", "```", "",
         "## 1. Batch plans (token budget 1024)", "",
         "| | batches | tokens computed | × real tokens | distinct shapes |", "|---|---|---|---|---|",
         f"| torch (pads to each batch's longest) | {bd['torch_batches']} | {bd['torch_tokens']} | "
         f"{bd['torch_tokens'] / bd['real_tokens']:.2f} | {len(set(bd['torch_shapes']))} |",
         f"| flax (length + batch buckets) | {bd['flax_batches']} | {bd['flax_tokens']} | "
         f"{bd['flax_tokens'] / bd['real_tokens']:.2f} | {bd['flax_distinct_shapes']} |", "",
         f"{bd['texts']} texts, {bd['real_tokens']} real tokens. torch shapes: "
         + ", ".join(f"{b}x{t}" for b, t in bd["torch_shapes"]) + ". flax shapes: "
         + ", ".join(f"{b}x{t}" for b, t in bd["flax_shapes"]) + ".", "",
         f"Warm-up (first embed call): flax {bd['warmup_s']['flax']:.1f} s for {bd['flax_compilations']} "
         f"compilations, torch {bd['warmup_s']['torch']:.1f} s. The bench reports warm-up apart: it is not "
         "in the steady-state ratio.", "",
         "## 2-3. Steady state, split (seconds per pass over the texts)", "",
         "| what | s | ratio |", "|---|---|---|"]
    te, fe = med["torch embed (end to end)"], med["flax embed (end to end)"]
    own, fs = med["torch forward, own shapes"], med["torch forward, flax's padded shapes"]
    fc, fh = med["flax jitted forward only (device arrays in, block_until_ready)"], \
        med["flax hidden_layer (pad + call + copy out + slice)"]
    notes = {"torch embed (end to end)": "1.00",
             "flax embed (end to end)": f"flax speed {te / fe:.2f}× torch",
             "torch forward, own shapes": f"{own / te:.2f} of torch embed",
             "torch forward, flax's padded shapes": f"{fs / own:.2f}× own shapes (cost of flax's padding)",
             "flax jitted forward only (device arrays in, block_until_ready)": f"{fc / fs:.2f}× torch at the same shapes",
             "flax hidden_layer (pad + call + copy out + slice)": f"{fh / fc:.2f}× jitted forward only",
             "tokenization": f"{med['tokenization'] / fe:.1%} of flax embed"}
    for k, v in med.items():
        L.append(f"| {k} | {v:.3f} | {notes[k]} |")
    L += ["", "Paired ratios (each repeat's own ratio, median over repeats: the number to read):", "",
          "| ratio | value |", "|---|---|"] + [f"| {k} | {v:.2f} |" for k, v in bd["paired_ratios"].items()]
    L += ["", f"## 4. One layer's blocks at the flax shape carrying most tokens {blk_shape[0]}x{blk_shape[1]} "
          f"(m = {blk_shape[0] * blk_shape[1]} rows), ms per call", "",
          "| block | jax | torch | jax/torch | × per layer | share of jax layer |", "|---|---|---|---|---|---|"]
    tot_j = sum(v["jax_ms"] * v["per_layer"] for v in blk.values())
    tot_t = sum(v["torch_ms"] * v["per_layer"] for v in blk.values())
    for k, v in blk.items():
        L.append(f"| {k} | {v['jax_ms']:.3f} | {v['torch_ms']:.3f} | {v['ratio']:.2f} | "
                 f"{v['per_layer']} | {v['jax_ms'] * v['per_layer'] / tot_j:.0%} |")
    L.append(f"| **sum over one layer** | {tot_j:.2f} | {tot_t:.2f} | {tot_j / tot_t:.2f} | | |")
    L += ["", "XLA's optimized HLO for one [1024, h] x [h, 4h] dot (what the GEMM is lowered to):", "", "```"]
    L += dots["hlo"] + ["```", ""]
    if knobs:
        L += ["## 5. Knobs, each in its own process with torch timed beside it", "",
              f"{a.knob_texts} texts; ratio = torch time / flax time (> 1: flax faster); max |diff| of 16 "
              "embeddings vs torch (parity needs ≤ 1e-4 on random weights).", "",
              "| knob | flax speed × torch | flax s | torch s | warm-up s | compilations | max abs diff |",
              "|---|---|---|---|---|---|---|"]
        for k, r in knobs.items():
            if "error" in r:
                L.append(f"| {k} | failed: {r['error']} | | | | | |")
            else:
                L.append(f"| {k} | {r['flax_over_torch_speed']:.2f} | {r['flax_s']:.2f} | {r['torch_s']:.2f} | "
                         f"{r['warmup_s']:.1f} | {r['compilations']} | {r['max_abs_diff']:.1e} |")
        L.append("")
    return "\n".join(L)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("directory", type=Path, help="a convert --to safetensors,flax output")
    p.add_argument("--texts", type=int, default=256)
    p.add_argument("--knob-texts", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip", default="", help="comma list of parts to skip: blocks,knobs")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--buckets", default="shipped", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(knob_worker(a.directory, a.texts, a.repeats, a.buckets, a.threads)))
        return 0
    import jax
    import torch

    rt_t, rt_f = load(a.directory, a.threads)
    facts = {"cpu": next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                          if ln.startswith("model name")), "?"), "cores": os.cpu_count(),
             "jax": jax.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
             "devices": [str(d) for d in jax.devices()]}
    texts = workload(rt_t, a.texts)
    print("breakdown", file=sys.stderr, flush=True)
    bd = breakdown(rt_t, rt_f, texts, a.repeats)
    skip = set(a.skip.split(","))
    # the shape carrying the most tokens (most common first): where the time goes
    common = max(set(bd["flax_shapes"]), key=lambda s: (bd["flax_shapes"].count(s) * s[0] * s[1]))
    blk = blocks(rt_f.spec, common, a.repeats) if "blocks" not in skip else {}
    dots = compiled_dots(rt_f.spec)
    del rt_t, rt_f
    knobs = run_knobs(a.directory, a.knob_texts, a.repeats, a.threads) if "knobs" not in skip else {}
    text = render(facts, bd, blk, common, dots, knobs, a)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
        a.out.with_suffix(".json").write_text(json.dumps({"facts": facts, "breakdown": bd, "blocks": blk,
                                                          "dots": dots, "knobs": knobs}, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
