"""Fine-tune the packaged MiniLM on the shipped NER, QA and baking-corpus data sets: token
classification and question answering with full fine-tuning and LoRA (no probe), masked-LM
training (held-out perplexity before and after); each run its own `encoderkit finetune` process,
so its peak RSS is that run's alone. Prints one markdown table per task with the command of every
row and the load average beside the figures (the machine is shared).

    PYTHONPATH=. python benchmarks/finetune_tasks_minilm.py OUT_DIR [--tasks ner,qa,mlm] [--methods full,lora]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

# (task flag, data, eval, epochs, {method: lr}, extra flags)
RUNS = {
    "ner": ("token-classification", "NER_TRAIN", "NER_TEST", "10", {"full": "1e-4", "lora": "1e-3"}, []),
    "qa": ("question-answering", "QA_TRAIN", "QA_TEST", "8", {"full": "1e-4", "lora": "1e-3"}, []),
    "mlm": ("mlm", "MLM_TRAIN", "MLM_TEST", "10", {"full": "1e-4", "lora": "1e-3"}, []),
}


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def run(out: Path, name: str, method: str) -> dict:
    import encoderkit.finetune as ft

    task, data, ev, epochs, lrs, extra = RUNS[name]
    d = out / f"{name}-{method}"
    cmd = ["encoderkit", "finetune", "minilm", "--task", task, "--data", str(getattr(ft, data).relative_to(Path.cwd())),
           "--eval", str(getattr(ft, ev).relative_to(Path.cwd())), "--method", method, "--epochs", epochs,
           "--lr", lrs[method], *extra, "--out", str(d), "--force", "--quiet"]
    before = load()
    subprocess.run([sys.executable, "-m", "encoderkit.cli", *cmd[1:]], check=True)
    m = json.loads((d / "train_metrics.json").read_text())
    return m | {"command": shlex.join(cmd), "load_before": before, "load_after": load()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--tasks", default="ner,qa,mlm")
    p.add_argument("--methods", default="full,lora")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {t: [run(out, t, m) for m in a.methods.split(",")] for t in a.tasks.split(",")}
    (out / "results.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    print(f"cores: {os.cpu_count()}; load average (1/5/15 min) before and after each run below")
    if "ner" in rows:
        print("\n| method | held-out entity F1 | precision | recall | train time (s) | peak RSS (MB) | trainable params "
              "| load avg before -> after | command |\n|---|---|---|---|---|---|---|---|---|")
        for m in rows["ner"]:
            print(f"| {m['method']} | {m['eval_f1']:.3f} | {m['eval_precision']:.3f} | {m['eval_recall']:.3f} | "
                  f"{m['train_seconds']:.0f} | {m['peak_rss_mb']:.0f} | {m['trainable_parameters']} | "
                  f"{m['load_before']} -> {m['load_after']} | `{m['command']}` |")
    if "qa" in rows:
        print("\n| method | held-out EM | held-out F1 | answerable EM / F1 | unanswerable abstained | train time (s) | "
              "peak RSS (MB) | trainable params | load avg before -> after | command |\n"
              "|---|---|---|---|---|---|---|---|---|---|")
        for m in rows["qa"]:
            print(f"| {m['method']} | {m['eval_exact_match']:.1f} | {m['eval_f1']:.1f} | "
                  f"{m['eval_has_answer_exact_match']:.1f} / {m['eval_has_answer_f1']:.1f} | "
                  f"{m['eval_no_answer_exact_match']:.1f} % | {m['train_seconds']:.0f} | {m['peak_rss_mb']:.0f} | "
                  f"{m['trainable_parameters']} | {m['load_before']} -> {m['load_after']} | `{m['command']}` |")
    if "mlm" in rows:
        print("\n| method | held-out perplexity before | after | train time (s) | peak RSS (MB) | trainable params | "
              "load avg before -> after | command |\n|---|---|---|---|---|---|---|---|")
        for m in rows["mlm"]:
            print(f"| {m['method']} | {m['eval_perplexity_before']:.1f} | {m['eval_perplexity']:.1f} | "
                  f"{m['train_seconds']:.0f} | {m['peak_rss_mb']:.0f} | {m['trainable_parameters']} | "
                  f"{m['load_before']} -> {m['load_after']} | `{m['command']}` |")


if __name__ == "__main__":
    main()
