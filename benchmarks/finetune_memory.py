"""LoRA against full fine-tuning on random roberta-large (CPU): step time and peak RSS, each method
in its own process so the peak is that method's alone.

    PYTHONPATH=. python benchmarks/finetune_memory.py WORK_DIR [--steps 3] [--batch-size 4]

Prints one JSON line per method: {"method", "steps", "step_seconds", "peak_rss_mb", "trainable"}.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def run(work: Path, steps: int = 3, batch_size: int = 4, size: str = "large") -> list[dict]:
    from encoderkit.finetune import TOPICS_TRAIN
    from encoderkit.storage.random_init import init_random

    ckpt = work / f"roberta-{size}-random"
    if not ckpt.exists():
        init_random(ckpt, size)
    rows = []
    for method in ("lora", "full"):
        out = work / f"{size}-{method}"
        cmd = [sys.executable, "-m", "encoderkit.cli", "finetune", str(ckpt), "--data", str(TOPICS_TRAIN),
               "--method", method, "--max-steps", str(steps), "--batch-size", str(batch_size), "--out", str(out),
               "--force", "--quiet"]
        subprocess.run(cmd, check=True, capture_output=True)
        m = json.loads((out / "train_metrics.json").read_text())
        rows.append({"method": method, "steps": m["steps"], "step_seconds": m["train_seconds"] / m["steps"],
                     "peak_rss_mb": m["peak_rss_mb"], "trainable": m["trainable_parameters"],
                     "parameters": m["parameters"]})
    return rows


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("work")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--size", default="large")
    a = p.parse_args()
    Path(a.work).mkdir(parents=True, exist_ok=True)
    for row in run(Path(a.work), a.steps, a.batch_size, a.size):
        print(json.dumps(row))
