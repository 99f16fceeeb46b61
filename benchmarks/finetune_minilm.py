"""Fine-tune the packaged MiniLM on the shipped topics data set: probe, lora and full, each in its
own process (so peak RSS is that method's), then convert the trained classifiers and check that
onnx/tf/flax give torch's label on every held-out example.

    PYTHONPATH=. python benchmarks/finetune_minilm.py OUT_DIR [--epochs 2]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--epochs", default="2")
    p.add_argument("--methods", default="probe,lora,full")
    a = p.parse_args()
    from encoderkit.finetune import TOPICS_TEST, TOPICS_TRAIN
    from encoderkit.finetune.data import read_examples

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    test = read_examples(TOPICS_TEST)
    majority = max(Counter(test.labels).values()) / len(test)
    rows = []
    for method in a.methods.split(","):
        d = out / method
        lr = {"lora": "1e-3", "full": "1e-4"}.get(method)
        cmd = [sys.executable, "-m", "encoderkit.cli", "finetune", "minilm", "--data", str(TOPICS_TRAIN),
               "--eval", str(TOPICS_TEST), "--method", method, "--epochs", a.epochs, "--out", str(d), "--force",
               "--quiet", *(["--lr", lr] if lr else [])]
        subprocess.run(cmd, check=True)
        m = json.loads((d / "train_metrics.json").read_text())
        agree = {}
        if method != "probe":
            import encoderkit
            from encoderkit.conversion import convert

            convert(d, ["safetensors", "onnx", "tf", "flax"], out / f"{method}-conv", force=True)
            want = [r[0]["label"] for r in encoderkit.load(d, "torch").classify(list(test.texts))]
            for b in ("onnx", "tf", "flax"):
                got = [r[0]["label"] for r in encoderkit.load(out / f"{method}-conv", b).classify(list(test.texts))]
                agree[b] = f"{sum(g == w for g, w in zip(got, want))}/{len(want)}"
        rows.append((method, m["eval_accuracy"], m["train_seconds"], m["peak_rss_mb"],
                     m.get("trainable_parameters"), agree))
    print(f"held-out examples: {len(test)}, majority-class baseline {majority:.3f}")
    print("| method | held-out accuracy | train time (s) | peak RSS (MB) | trainable params | "
          "converted label == torch |")
    print("|---|---|---|---|---|---|")
    for method, acc, sec, rss, tp, agree in rows:
        ag = ", ".join(f"{k} {v}" for k, v in agree.items()) or "n/a (probe: same embed on every backend)"
        print(f"| {method} | {acc:.3f} | {sec:.0f} | {rss:.0f} | {tp} | {ag} |")


if __name__ == "__main__":
    main()
