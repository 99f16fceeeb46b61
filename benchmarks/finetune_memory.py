"""LoRA against full fine-tuning on random roberta-large (CPU): step time and peak RSS, each method
in its own process so the peak is that method's alone; for every training task.

    PYTHONPATH=. python benchmarks/finetune_memory.py WORK_DIR [--steps 3] [--batch-size 4]
        [--tasks sequence-classification,token-classification,question-answering,mlm]

Prints one JSON line per task and method: {"task", "method", "steps", "step_seconds", "peak_rss_mb",
"trainable", "parameters", "load_before", "load_after"} (load: the 1/5/15-minute load average).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CLASSIFICATION = "sequence-classification"


def _data(task: str):
    import encoderkit.finetune as ft

    return {CLASSIFICATION: ft.TOPICS_TRAIN, "token-classification": ft.NER_TRAIN,
            "question-answering": ft.QA_TRAIN, "mlm": ft.MLM_TRAIN}[task]


def run(work: Path, steps: int = 3, batch_size: int = 4, size: str = "large",
        tasks: tuple[str, ...] = (CLASSIFICATION,)) -> list[dict]:
    from encoderkit.storage.random_init import init_random

    ckpt = work / f"roberta-{size}-random"
    if not ckpt.exists():
        init_random(ckpt, size)
    rows = []
    for task in tasks:
        for method in ("lora", "full"):
            out = work / f"{size}-{task}-{method}"
            cmd = [sys.executable, "-m", "encoderkit.cli", "finetune", str(ckpt), "--data", str(_data(task)),
                   "--method", method, "--max-steps", str(steps), "--batch-size", str(batch_size), "--out", str(out),
                   "--force", "--quiet", *(["--task", task] if task != CLASSIFICATION else [])]
            load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
            subprocess.run(cmd, check=True, capture_output=True)
            m = json.loads((out / "train_metrics.json").read_text())
            rows.append({"task": task, "method": method, "steps": m["steps"],
                         "step_seconds": m["train_seconds"] / m["steps"], "peak_rss_mb": m["peak_rss_mb"],
                         "trainable": m["trainable_parameters"], "parameters": m["parameters"],
                         "load_before": load, "load_after": " / ".join(f"{x:.1f}" for x in os.getloadavg())})
    return rows


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("work")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--size", default="large")
    p.add_argument("--tasks", default=CLASSIFICATION)
    a = p.parse_args()
    Path(a.work).mkdir(parents=True, exist_ok=True)
    for row in run(Path(a.work), a.steps, a.batch_size, a.size, tuple(a.tasks.split(","))):
        print(json.dumps(row))
