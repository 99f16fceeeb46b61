"""Where the shipped fp32 ONNX encoder's time goes on this CPU, against the fp32 GEMM roofline.

On CONVERT_DIR (``convert --to safetensors,onnx``, e.g. ``demo-out/roberta-large-converted``), the
short masked workload ``make bench`` times (fill-mask, the texts fitted as the bench fits them),
through encoderkit's onnx backend as shipped, all in one process:

1. wall time per call unprofiled (best and median of --repeats), FLOPs of the real tokens
   (``encoderkit.bench.model_flops``) and the fraction of the roofline (torch's fp32 GEMM peak,
   ``encoderkit.bench.gemm_peak_gflops``: as ``make bench`` takes it, measured after a warm-up, after
   every timed call and at the end, the highest of those);
2. ONNX Runtime's own profiler (``SessionOptions.enable_profiling``) on the same calls, kernel time
   by op type, and the time of a run outside the kernels;
3. every MatMul shape of the graph: its rate inside the graph (median over the profiled calls)
   against the same MatMul as a one-node graph with one weight (weights hot in cache), a graph of
   --layers such MatMuls with distinct weights (weights streamed from memory as in the encoder), and
   torch.mm;
4. a profiled call, accounted: the encoder's MatMul FLOPs at the peak, what MatMul takes beyond
   that, each other op type, the session's time outside kernels, and the time outside the encoder
   session (tokenizer, batching, the LM head's session, top-k).

    python -m benchmarks.profile_fp32 demo-out/roberta-large-converted --name roberta-large-random
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _best(fn, n: int) -> float:
    fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def _matmul_session(weights: list[np.ndarray]):
    """x @ w for every w, as one ORT graph (one output each: the MatMuls run one after another, each
    reading its own weight), spinning off as the onnx backend runs."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k, n = weights[0].shape
    inits = [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)]
    nodes = [helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"]) for i in range(len(weights))]
    outs = [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, ["m", n]) for i in range(len(weights))]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])], outs, inits)
    o = ort.SessionOptions()
    o.log_severity_level = 3
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(m.SerializeToString(), o, providers=["CPUExecutionProvider"])


def matmul_rates(shapes: list[tuple[int, int, int]], layers: int, repeats: int) -> dict:
    """GFLOP/s per [M, K, N]: ORT MatMul with one weight (hot in cache), ORT over `layers` distinct
    weights (streamed from memory, as in the encoder), torch.mm."""
    import torch

    rng = np.random.default_rng(0)
    out = {}
    for m, k, n in shapes:
        x = rng.standard_normal((m, k), dtype=np.float32)
        w = [rng.standard_normal((k, n), dtype=np.float32) * 0.03 for _ in range(layers)]
        flop = 2 * m * k * n
        hot, streamed = _matmul_session(w[:1]), _matmul_session(w)
        tx, tw = torch.from_numpy(x), torch.from_numpy(w[0])
        out[f"{m}x{k}x{n}"] = {
            "ort_hot": flop / _best(lambda: hot.run(None, {"x": x}), repeats) / 1e9,
            "ort_streamed": layers * flop / _best(lambda: streamed.run(None, {"x": x}), max(2, repeats // 3)) / 1e9,
            "torch": flop / _best(lambda: torch.mm(tx, tw), repeats) / 1e9}
        del hot, streamed
    return out


def profile(rt, texts: list[str], calls: int, prefix: str) -> dict:
    """ORT's profiler over `calls` fill-mask calls on a second encoder session of the same graph,
    opened with the onnx backend's options."""
    from encoderkit.backends.onnx.runtime import graph_path, ort_session

    shipped = rt.encoder
    rt.encoder = ort_session(graph_path(rt.directory, rt.info["files"][rt.encoder_key]), profile_prefix=prefix)
    try:
        rt.fill_mask(texts)  # warm: not counted (run ids below)
        walls = []
        for _ in range(calls):
            t = time.perf_counter()
            rt.fill_mask(texts)
            walls.append(time.perf_counter() - t)
        events = json.loads(Path(rt.encoder.end_profiling()).read_text())
    finally:
        rt.encoder = shipped
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                   if e.get("cat") == "Session" and e["name"] == "model_run")
    counted = spans[len(spans) // (calls + 1):]  # every call runs the encoder as often: drop the warm call's
    lo = counted[0][0]
    by_op, matmul = defaultdict(float), defaultdict(list)
    kernel = 0.0
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < lo:
            continue
        op = e["args"].get("op_name", "?")
        by_op[op] += e["dur"]
        kernel += e["dur"]
        if op == "MatMul":
            a = next(iter(e["args"]["input_type_shape"][0].values()))
            y = next(iter(e["args"]["output_type_shape"][0].values()))
            matmul[(math.prod(a[:-1]), a[-1], y[-1])].append(e["dur"])
    total = sum(b - a for a, b in counted)
    return {"calls": calls, "call_us": 1e6 * sum(walls) / calls, "run_us": total / calls, "kernel_us": kernel / calls,
            "by_op_us": {k: v / calls for k, v in sorted(by_op.items(), key=lambda x: -x[1])},
            "matmul": {f"{m}x{k}x{n}": {"count_per_call": len(v) / calls, "median_us": statistics.median(v),
                                        "gflops": 2 * m * k * n / statistics.median(v) / 1e3}
                       for (m, k, n), v in sorted(matmul.items())}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("converted", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--layers", type=int, default=24, help="distinct weights in the streamed-weights graph")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for profile_fp32_NAME.{md,json}")
    a = p.parse_args(argv)
    import encoderkit
    from encoderkit.bench import fit_workload, gemm_peak_gflops, model_flops
    from encoderkit.bench.run import SHORT_PEAK
    from encoderkit.core.texts import read_workload

    load_before = os.getloadavg()
    rt = encoderkit.load(a.converted, "onnx")
    tok = rt.tokenizer
    texts, _ = fit_workload(read_workload("short_masked", tok.mask_token), tok, need_mask=True)
    ids = tok.encode(texts, truncate=True)
    lens = [len(x) for x in ids]
    n_masks = sum(t.count(tok.mask_token) for t in texts)
    flops = model_flops(rt.spec, lens, n_masks)
    # as make bench: the peak after a full warm-up, after every timed call, and at the end; the highest divides
    peaks, walls = [gemm_peak_gflops()], []
    rt.fill_mask(texts[:2])
    peaks.append(gemm_peak_gflops(**SHORT_PEAK))
    for _ in range(a.repeats):
        t = time.perf_counter()
        rt.fill_mask(texts)
        walls.append(time.perf_counter() - t)
        peaks.append(gemm_peak_gflops(**SHORT_PEAK))
    best = min(walls)
    with tempfile.TemporaryDirectory() as d:
        prof = profile(rt, texts, max(3, a.repeats // 2), str(Path(d) / "ort"))
    shapes = [tuple(int(v) for v in k.split("x")) for k in prof["matmul"]]
    rates = matmul_rates([s for s in shapes if s[0] == max(x[0] for x in shapes)], a.layers, a.repeats)
    peaks.append(gemm_peak_gflops())
    load_after = os.getloadavg()
    peak = max(peaks)
    fractions = [flops / w / (peak * 1e9) for w in walls]

    # a profiled call, accounted: the parts sum to its wall time
    call = prof["call_us"]
    mm_flops = sum(2 * math.prod(int(v) for v in k.split("x")) * r["count_per_call"] for k, r in prof["matmul"].items())
    mm_ideal = mm_flops / (peak * 1e9) * 1e6
    rows = [("the encoder's MatMuls at the peak", mm_ideal),
            ("MatMul below the peak (its time minus the row above)", prof["by_op_us"].get("MatMul", 0.0) - mm_ideal)]
    rows += [(op, us) for op, us in prof["by_op_us"].items() if op != "MatMul" and us >= 0.002 * call]
    rows.append(("other ops (each < 0.2 %)",
                 sum(us for op, us in prof["by_op_us"].items() if op != "MatMul" and us < 0.002 * call)))
    rows.append(("encoder session outside its kernels", prof["run_us"] - prof["kernel_us"]))
    rows.append(("outside the encoder session (tokenize, batch, LM head session, top-k)", call - prof["run_us"]))
    md = [f"# fp32 ONNX encoder profile: {a.name}", "",
          f"`python -m benchmarks.profile_fp32 {a.converted} --name {a.name} --repeats {a.repeats}` — fill-mask, "
          f"short masked workload ({len(texts)} texts, {sum(lens)} tokens, {n_masks} masks), the onnx backend as "
          f"shipped. Load average before {load_before[0]:.2f}, after {load_after[0]:.2f} ({os.cpu_count()} cores). "
          f"torch fp32 GEMM peak measured {len(peaks)} times (at the start, after each timed call, at the end): "
          f"{min(peaks):.0f}–{peak:.0f} GFLOP/s.", "",
          f"Wall per call: best {best * 1e3:.0f} ms, median {statistics.median(walls) * 1e3:.0f} ms; "
          f"{flops / 1e9:.1f} GFLOP → {flops / best / 1e9:.0f} GFLOP/s. Against the highest peak measured here "
          f"({peak:.0f} GFLOP/s), as `make bench` takes it: **{statistics.median(fractions):.0%} of the roofline** "
          f"(median; best {max(fractions):.0%}).", "",
          f"## Where a call's time goes (ORT's profiler on, {prof['calls']} calls: {call / 1e3:.0f} ms per call)", "",
          "| part | ms | share of the call |", "|---|---|---|"]
    for what, us in rows:
        md.append(f"| {what} | {us / 1e3:.1f} | {us / call:.1%} |")
    md += ["", "## MatMul shapes: in the graph, alone, streamed, torch", "",
           f"GFLOP/s. In graph: median over the profiled calls. Alone: one-node ORT graph, one weight (hot in "
           f"cache), best of {a.repeats}. Streamed: {a.layers} MatMuls with distinct weights (read from "
           f"memory, as in the encoder). torch.mm: best of {a.repeats}.", "",
           "| [M, K, N] | per call | in graph | ORT alone | ORT streamed | torch.mm | in graph / torch.mm |",
           "|---|---|---|---|---|---|---|"]
    def cell(v: float | None) -> str:
        return f"{v:.0f}" if v else "–"

    for k, r in prof["matmul"].items():
        q = rates.get(k, {})
        md.append(f"| [{k.replace('x', ', ')}] | {r['count_per_call']:.0f} | {r['gflops']:.0f} | {cell(q.get('ort_hot'))} "
                  f"| {cell(q.get('ort_streamed'))} | {cell(q.get('torch'))} | "
                  + (f"{r['gflops'] / q['torch']:.2f}" if q.get("torch") else "–") + " |")
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"profile_fp32_{a.name}.md").write_text("\n".join(md) + "\n")
    (a.out / f"profile_fp32_{a.name}.json").write_text(json.dumps(
        {"walls_s": walls, "flops": flops, "tokens": lens, "matmul_flops_per_call": mm_flops,
         "peak_gflops": peaks, "roofline_fractions": fractions,
         "load": [load_before, load_after],
         "profile": prof, "matmul_rates": rates, "accounting_us": rows}, indent=1) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
