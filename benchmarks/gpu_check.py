"""GPU check: the backends that can use a GPU, against the torch CPU reference, and their speed.

    python -m benchmarks.gpu_check --out DIR [--size small] [--speed-size large]

Builds random checkpoints, converts them (onnx with fp16, flax), then:
- parity: torch on CUDA, flax on the GPU JAX sees, and ONNX Runtime's CUDA provider (fp32 and
  fp16 encoders) where the installed onnxruntime has it, each against torch on the CPU with the
  checks and tolerances `convert` validates with (encoderkit.verify.gate: fp32 max |diff| of hidden
  states and mask logits, fp16 accuracy thresholds), plus fill-mask scores and attentions;
- speed: fill-mask and embed throughput of torch CUDA and flax GPU on the same workloads
  (compile time excluded and reported separately), side by side in one process.
Writes gpu_check.json and prints one line per check. Exits 1 if a parity check fails.
Nothing here is asserted in CI (no GPU there); the figures go into the issues' notes.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from encoderkit.bench import read_workload


def _run(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "encoderkit.cli", *args], check=True)
    return time.perf_counter() - t


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def parity(conv: Path, say) -> dict:
    import jax
    import torch

    from encoderkit.core.errors import ParityError
    from encoderkit.backends.loading import load
    from encoderkit.backends.catalog import backend as backend_info
    from encoderkit.verify.gate import fp32_parity, quant_accuracy, reference_probes

    texts = read_workload("short_masked", "<mask>", limit=8)
    ref = load(conv, backend="torch", device="cpu")
    probes = reference_probes(ref)  # the same probes and checks `convert` validates with
    want_fm, want_att = ref.fill_mask(texts, top_k=5), ref.attentions(texts[0]).probs
    out = {"jax_devices": [str(d) for d in jax.devices()], "torch_cuda": torch.cuda.is_available()}
    # name -> (backend, options); GPU candidates only
    systems: dict[str, tuple[str, dict]] = {}
    if torch.cuda.is_available():
        systems["torch-cuda"] = ("torch", {"device": "cuda"})
    systems["flax"] = ("flax", {})
    try:
        import onnxruntime as ort

        out["ort_providers"] = ort.get_available_providers()
        if "CUDAExecutionProvider" in out["ort_providers"]:
            systems["onnx-cuda"] = ("onnx", {})
            systems["onnx-fp16-cuda"] = ("onnx-fp16", {})
    except ImportError:
        out["ort_providers"] = None
    ok = True
    for name, (backend, options) in systems.items():
        rt = load(conv, backend=backend, **options)
        r: dict = {"device": str(getattr(rt, "device", getattr(rt, "providers", "")))}
        try:
            tol = backend_info(backend).tolerance
            if tol.quantized:
                acc = quant_accuracy(rt, probes)
                failed = [k for k, v in tol.thresholds().items() if k in acc and not acc[k] >= v]
                r |= {"kind": "quantized", **acc, "failed": failed}
                r["pass"] = not failed
            else:
                atol = tol.atol
                r |= fp32_parity(rt, probes, atol)  # raises ParityError beyond atol
                # end to end through the shared interface too: fill-mask scores and attentions
                r["score_max_diff"] = max(abs(g["score"] - w["score"]) for gt, wt in zip(rt.fill_mask(texts, top_k=5), want_fm)
                                          for gm, wm in zip(gt, wt) for g, w in zip(gm, wm))
                r["attn_max_diff"] = _max_diff(rt.attentions(texts[0]).probs, want_att)
                r["pass"] = max(r["score_max_diff"], r["attn_max_diff"]) <= atol
        except ParityError as e:
            r |= {"pass": False, "error": str(e)}
        ok &= r["pass"]
        out[name] = r
        say(f"parity {name}: {json.dumps(r)}")
    out["all_pass"] = ok
    return out


def speed(conv: Path, say, repeats: int = 3) -> dict:
    import torch

    from encoderkit.backends.loading import load

    mask = "<mask>"
    work = {"fill-mask/short": ("fill_mask", read_workload("short_masked", mask)),
            "embed/corpus": ("embed", read_workload("embed_corpus", mask))}
    systems = {}
    if torch.cuda.is_available():
        systems["torch-cuda"] = load(conv, backend="torch", device="cuda")
    systems["flax"] = load(conv, backend="flax")
    res: dict = {}
    for wname, (task, texts) in work.items():
        for name, rt in systems.items():
            t = time.perf_counter()
            getattr(rt, task)(texts)
            res.setdefault(wname, {})[name] = {"warmup_s": time.perf_counter() - t, "times": []}
        for _ in range(repeats):
            for name, rt in systems.items():
                if name == "torch-cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                getattr(rt, task)(texts)  # results come back as numpy: the work is done
                res[wname][name]["times"].append(time.perf_counter() - t)
        for name in systems:
            med = float(np.median(res[wname][name]["times"]))
            res[wname][name]["texts_per_s"] = len(texts) / med
        say(f"speed {wname}: " + ", ".join(f"{n} {v['texts_per_s']:.1f} texts/s (warm-up {v['warmup_s']:.1f} s)"
                                          for n, v in res[wname].items()))
    return res


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--work", default="/tmp/gpu-check")
    p.add_argument("--size", default="small")
    p.add_argument("--speed-size", default="large", help="checkpoint size for the speed part, or 'none'")
    a = p.parse_args()
    out, work = Path(a.out), Path(a.work)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"python": platform.python_version()}

    def say(msg: str) -> None:
        print(msg, flush=True)

    def save() -> None:
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")

    ck, conv = work / f"{a.size}-ckpt", work / f"{a.size}-conv"
    report["init_s"] = _run("init-random", str(ck), "--size", a.size, "--force")
    report["convert_s"] = _run("convert", str(ck), "--to", "safetensors,onnx,flax", "--quantize", "fp16",
                               "--out", str(conv), "--force")
    report["parity"] = parity(conv, say)
    save()
    if a.speed_size != "none":
        ck, conv = work / f"{a.speed_size}-ckpt", work / f"{a.speed_size}-conv"
        report["speed_init_s"] = _run("init-random", str(ck), "--size", a.speed_size, "--force")
        report["speed_convert_s"] = _run("convert", str(ck), "--to", "safetensors,flax", "--out", str(conv), "--force")
        report["speed_size"] = a.speed_size
        report["speed"] = speed(conv, say)
        save()
    return 0 if report["parity"]["all_pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
