"""Transfer learning: linear probes on frozen embeddings, and freeze / LoRA / full fine-tuning.

``finetune(model, data, out, method=...)``:

- ``probe``: pooled embeddings from any backend (``embed``: ``pooling``, ``layer``) into a
  scikit-learn logistic regression; the head is written as safetensors + JSON (no pickle).
- ``freeze`` / ``lora`` / ``full``: ``*ForSequenceClassification`` trained with transformers'
  ``Trainer`` (``encoderkit.finetune.trainer``); ``nproc > 1`` runs it as DDP processes through
  torchrun. The output is a standard Hugging Face checkpoint directory, which every encoderkit
  backend classifies with after ``encoderkit convert``.

Every output directory is written atomically (``io.atomic_dir``), with ``train_report.md``, a
loss/accuracy PNG and a sha256 manifest.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from .data import Examples, label_names, read_examples
from .trainer import ERROR_FILE, METHODS, TRAINER_METHODS, TrainConfig

REPORT = "train_report.md"
CURVE = "train_curve.png"
# Beyond these the trainer's own arithmetic breaks (epochs x steps overflows) long before a run ends.
MAX_EPOCHS, MAX_STEPS, MAX_BATCH = 1e6, 10**9, 10**6
# The labelled data set the project ships (package data): 280 hand-written sentences in four
# topics (sports, food, technology, weather), 70 each; every fifth sentence of each topic is held out.
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
TOPICS_TRAIN = DATA_DIR / "topics_train.jsonl"
TOPICS_TEST = DATA_DIR / "topics_test.jsonl"


def finetune(model: str | Path, data: str | Path, out: str | Path, *, method: str = "lora",
             eval_data: str | Path | None = None, text_column: str = "text", pair_column: str | None = None,
             label_column: str = "label", unfreeze_top: int = 0, lora_r: int = 8, lora_alpha: int = 16,
             lora_targets: tuple[str, ...] | str = ("query", "value"), epochs: float = 3.0, lr: float | None = None,
             batch_size: int = 16, seed: int = 0, nproc: int = 1, backend: str | None = None,
             pooling: str = "mean", layer: int = -1, normalize: bool = False, dropout: float | None = None,
             group_by_length: bool = True, shuffle: bool = True, optimizer: str = "adamw_torch",
             max_steps: int = -1, force: bool = False,
             quiet: bool = False) -> dict[str, Any]:
    """Fine-tune ``model`` on labelled ``data`` and write the result to ``out`` (atomically).

    Args:
        method: probe | freeze | lora | full.
        backend: (probe) the backend computing the embeddings; ``model`` must then be loadable on it.
        nproc: (freeze/lora/full) DDP processes via torchrun (gloo on CPU, NCCL on GPU).
        dropout: None keeps the checkpoint's dropout; 0 turns it off (deterministic runs).
        lr: default 1e-3 for lora, 5e-5 otherwise.
    Returns:
        The metrics (eval accuracy, train seconds, peak RSS, ...).
    Raises:
        InputError: bad data (naming file and row), a bad argument (every number is checked before
            anything is read or trained: ``check_arguments``), an existing ``out`` without ``force``,
            an ``out`` that is, holds or lies inside the model or a data file, or training that
            produced non-finite weights (nothing is written then).
    """
    from ..storage.checkpoint import local_model_path
    from ..storage.files import atomic_dir, refuse_overlap, refuse_special
    from ..storage.manifest import write_manifest

    if isinstance(lora_targets, str):
        lora_targets = tuple(t.strip() for t in lora_targets.split(",") if t.strip())
    check_arguments(method=method, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, nproc=nproc,
                    dropout=dropout, max_steps=max_steps, unfreeze_top=unfreeze_top, lora_r=lora_r,
                    lora_alpha=lora_alpha, lora_targets=lora_targets, pooling=pooling, layer=layer)
    out = Path(out)
    # --force replaces OUT: it must not be (or hold, or sit inside) the model or the data
    refuse_overlap(out, [("model", local_model_path(model)), ("--data file", Path(data)),
                         ("--eval file", Path(eval_data) if eval_data is not None else None)])
    refuse_special(out)
    train = read_examples(data, text_column=text_column, pair_column=pair_column, label_column=label_column)
    labels = label_names(train)
    ev = read_examples(eval_data, text_column=text_column, pair_column=pair_column,
                       label_column=label_column) if eval_data is not None else None
    if ev is not None:
        if ev.label_kind != train.label_kind:
            raise InputError(f"{ev.source}: labels are {ev.label_kind}s, {train.source}'s are "
                             f"{train.label_kind}s; use one type in both files")
        ev.label_ids(labels)  # an eval label the training set lacks: an error naming its row
    if out.exists() and not force:
        raise InputError(f"{out} already exists; pass --force to replace it")
    if method == "freeze":
        _check_unfreeze_top(model, unfreeze_top)
    with atomic_dir(out, force=force) as tmp:
        if method == "probe":
            metrics = _probe(model, backend, train, ev, labels, tmp, pooling=pooling, layer=layer,
                             normalize=normalize, seed=seed)
        else:
            from ..storage.checkpoint import verified_checkpoint_directory

            # its manifest checked (an init-random or finetune output); a `convert` output: its HF layout
            directory = verified_checkpoint_directory(model)
            cfg = TrainConfig(
                model_dir=str(directory), method=method, train=_payload(train, labels),
                eval=_payload(ev, labels) if ev is not None else None, labels=list(labels), epochs=float(epochs),
                lr=lr if lr is not None else (1e-3 if method == "lora" else 5e-5), batch_size=batch_size, seed=seed,
                unfreeze_top=unfreeze_top, lora_r=lora_r, lora_alpha=lora_alpha, lora_targets=tuple(lora_targets),
                dropout=dropout, group_by_length=group_by_length, shuffle=shuffle, optimizer=optimizer, max_steps=max_steps, nproc=nproc, quiet=quiet)
            if method == "lora":
                _require("peft", "--method lora")
            _require("accelerate", f"--method {method}")
            metrics = _train(cfg, tmp)
        metrics["model"], metrics["data"] = str(model), str(data)
        if method == "probe":  # the trainer writes its own (with its config); a probe's is written here
            (tmp / "train_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (tmp / REPORT).write_text(render_report(metrics, labels, train, ev))
        _curve(metrics, tmp / CURVE)
        write_manifest(tmp, {"kind": "finetune", "method": method, "source": str(model)})
    return metrics


def _real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def max_processes() -> tuple[int, str]:
    """The most DDP processes this machine can run, and per what: one per GPU, else per CPU core."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return max(1, torch.cuda.device_count()), "GPU"
    return os.cpu_count() or 1, "CPU core"


def check_arguments(*, method: str, epochs, lr, batch_size, seed, nproc, dropout, max_steps, unfreeze_top,
                    lora_r, lora_alpha, lora_targets, pooling: str = "mean", layer=-1) -> None:
    """Every training number checked before anything is read, spawned or trained (whatever the
    method: a probe that ignores ``lr`` still refuses a NaN one).

    Raises:
        InputError: naming the flag, the value and what it must be.
    """
    import math

    from ..tasks.kernels import POOLINGS

    def bad(flag: str, v, what: str) -> InputError:
        return InputError(f"{flag} must be {what}, got {v!r}")

    if method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if not _real(epochs) or not math.isfinite(epochs) or not 0 < epochs <= MAX_EPOCHS:
        raise bad("--epochs", epochs, f"a positive number up to {MAX_EPOCHS:g}")
    if lr is not None and (not _real(lr) or not math.isfinite(lr) or lr <= 0):
        raise bad("--lr", lr, "a positive finite number")
    if dropout is not None and (not _real(dropout) or not math.isfinite(dropout) or not 0 <= dropout < 1):
        raise bad("--dropout", dropout, "a number in [0, 1)")
    if not _int(max_steps) or not (max_steps == -1 or 1 <= max_steps <= MAX_STEPS):
        raise bad("--max-steps", max_steps, f"a positive integer up to {MAX_STEPS:g} (or -1: train by --epochs)")
    if not _int(batch_size) or not 1 <= batch_size <= MAX_BATCH:
        raise bad("--batch-size", batch_size, f"a positive integer up to {MAX_BATCH:g}")
    if not _int(seed) or not 0 <= seed < 2**32:
        raise bad("--seed", seed, "an integer in [0, 2**32)")
    if not _int(unfreeze_top) or unfreeze_top < 0:
        raise bad("--unfreeze-top", unfreeze_top, "an integer >= 0")
    for flag, v in (("--lora-r", lora_r), ("--lora-alpha", lora_alpha)):
        if not _int(v) or v < 1:
            raise bad(flag, v, "a positive integer")
    if not lora_targets or not all(isinstance(t, str) and t for t in lora_targets):
        raise bad("--lora-targets", lora_targets, "a comma list of projection names (e.g. query,value)")
    if pooling not in POOLINGS:
        raise bad("--pooling", pooling, f"one of {', '.join(POOLINGS)}")
    if not _int(layer):
        raise bad("--layer", layer, "an integer")
    if not _int(nproc) or nproc < 1:
        raise bad("--nproc", nproc, "a positive integer")
    if nproc > 1:
        if method == "probe":
            raise InputError("--nproc applies to freeze/lora/full (a probe trains a logistic regression)")
        most, unit = max_processes()
        if nproc > most:
            raise InputError(f"--nproc {nproc} is more processes than this machine can run ({most}: one per {unit})")
        if batch_size % nproc:
            raise InputError(f"--batch-size {batch_size} is not divisible by --nproc {nproc} (the global batch is "
                             "split evenly across the processes)")


def _check_unfreeze_top(model, unfreeze_top: int) -> None:
    """--unfreeze-top against the model's layer count, before any worker starts."""
    from ..storage.checkpoint import checkpoint_directory, read_json

    directory = checkpoint_directory(model)
    layers = read_json(directory / "config.json").get("num_hidden_layers")
    if _int(layers) and unfreeze_top > layers:
        raise InputError(f"--unfreeze-top must be in 0..{layers} (the model has {layers} layers), got {unfreeze_top}")


def _require(module: str, what: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise InputError(f"{what} needs {module}; pip install 'encoderkit[train]'")


def _payload(ex: Examples, labels: tuple[str, ...]) -> dict:
    return {"texts": list(ex.texts), "pairs": list(ex.pairs) if ex.pairs else None, "labels": ex.label_ids(labels)}


def _probe(model, backend, train: Examples, ev: Examples | None, labels, out: Path, *, pooling, layer,
           normalize, seed) -> dict[str, Any]:
    import numpy as np

    from ..core.progress import say
    from ..backends.loading import load
    from .probe import ProbeConfig, fit_probe, save_probe

    if train.pairs is not None:
        raise InputError("--method probe takes single texts (no --pair-column): it pools one text's embedding")
    _require("sklearn", "--method probe")
    rt = load(model, backend)
    t0 = time.perf_counter()
    say(f"embedding {len(train)} training texts on {rt.name} ...")
    x = rt.embed(list(train.texts), pooling=pooling, layer=layer, normalize=normalize, truncate=True)
    y = train.label_ids(labels)
    w, b = fit_probe(x, y, len(labels), seed=seed)
    if not (np.isfinite(w).all() and np.isfinite(b).all()):
        raise InputError("the probe's fitted weights are not finite (NaN or inf); nothing was written")
    seconds = time.perf_counter() - t0
    config = ProbeConfig(base=str(model), labels=tuple(labels), pooling=pooling, layer=layer, normalize=normalize)
    save_probe(out, config, w, b)
    train_acc = float(np.mean(np.argmax(x @ w.T + b, 1) == np.asarray(y)))
    acc = None
    if ev is not None:
        xe = rt.embed(list(ev.texts), pooling=pooling, layer=layer, normalize=normalize, truncate=True)
        acc = float(np.mean(np.argmax(xe @ w.T + b, 1) == np.asarray(ev.label_ids(labels))))
    return {"method": "probe", "backend": rt.name, "train_seconds": seconds, "eval_accuracy": acc,
            "train_accuracy": train_acc, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "trainable_parameters": int(w.size + b.size), "history": [], "world_size": 1}


def _train(cfg: TrainConfig, out: Path) -> dict[str, Any]:
    """One process: in this one. Several: torchrun workers, which write into ``out`` (rank 0)."""
    from .trainer import train_into

    if cfg.nproc == 1:
        return train_into(cfg, out)
    with tempfile.TemporaryDirectory() as td:
        cfg_path = Path(td) / "train_config.json"
        d = cfg.__dict__ | {"lora_targets": list(cfg.lora_targets)}
        cfg_path.write_text(json.dumps(d))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cfg.nproc}",
               "-m", "encoderkit.finetune.trainer", str(cfg_path), str(out)]
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # this encoderkit, also for the workers
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        refused = out / "ranks" / ERROR_FILE
        if proc.returncode != 0 and refused.is_file():  # a worker refused (e.g. non-finite weights): its line
            raise InputError(json.loads(refused.read_text())["error"])
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            raise InputError(f"DDP training with {cfg.nproc} processes failed (exit {proc.returncode}):\n{tail}")
    metrics = json.loads((out / "train_metrics.json").read_text())
    metrics["launcher_seconds"] = time.perf_counter() - t0
    return metrics


def rank_digests(out: str | Path) -> dict[int, str]:
    """{rank: sha256 of its final weights} written by each training process."""
    return {int(p.stem.removeprefix("rank")): json.loads(p.read_text())["sha256"]
            for p in sorted((Path(out) / "ranks").glob("rank*.json"))}


def render_report(m: dict[str, Any], labels, train: Examples, ev: Examples | None) -> str:
    from collections import Counter

    counts = Counter(train.labels)
    majority = max(Counter(ev.labels).values()) / len(ev) if ev is not None else None
    lines = ["# encoderkit fine-tuning report", "",
             f"- model: `{m['model']}`", f"- method: {m['method']}", f"- data: `{m['data']}` ({len(train)} examples)",
             f"- labels: {', '.join(f'{lab} ({counts[lab]})' for lab in labels)}",
             f"- held-out examples: {len(ev) if ev is not None else 'none'}"]
    if m.get("eval_accuracy") is not None:
        lines.append(f"- held-out accuracy: {m['eval_accuracy']:.4f} (majority-class baseline {majority:.4f})")
    lines += [f"- train time: {m['train_seconds']:.1f} s" + (f" ({m['steps']} steps)" if "steps" in m else ""),
              f"- peak RSS: {m['peak_rss_mb']:.0f} MB", f"- processes: {m.get('world_size', 1)}",
              f"- trainable parameters: {m.get('trainable_parameters')}" +
              (f" of {m['parameters']}" if m.get("parameters") else "")]
    if m.get("backend"):
        lines.append(f"- embeddings from backend: {m['backend']}")
    lines += ["", f"![loss and accuracy]({CURVE})", ""]
    return "\n".join(lines) + "\n"


def _curve(m: dict[str, Any], path: Path) -> None:
    """Training loss per step and held-out accuracy per epoch (one PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = m.get("history") or []
    steps = [(h["step"], h["loss"]) for h in hist if "loss" in h and "step" in h]
    acc = [(h["epoch"], h["eval_accuracy"]) for h in hist if "eval_accuracy" in h]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    if steps:
        a1.plot(*zip(*steps), lw=1)
    else:
        a1.text(0.5, 0.5, "no gradient steps\n(linear probe)", ha="center", va="center")
    a1.set_xlabel("step")
    a1.set_ylabel("training loss")
    if acc:
        a2.plot(*zip(*acc), marker="o")
    elif m.get("eval_accuracy") is not None:
        a2.bar(["held-out"], [m["eval_accuracy"]])
    a2.set_ylim(0, 1)
    a2.set_ylabel("held-out accuracy")
    a2.set_xlabel("epoch")
    fig.suptitle(f"{m['method']}: {Path(str(m.get('model', ''))).name}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def load_classifier(model: str | Path, backend: str | None = None, *, base: str | Path | None = None,
                    **options: Any):
    """Something with ``.classify(texts, pairs, top_k)``: a probe directory's ``ProbeClassifier``,
    else ``encoderkit.load(model, backend)`` (a checkpoint or `convert` output with the head)."""
    from .probe import ProbeClassifier, is_probe_dir

    if is_probe_dir(model):
        return ProbeClassifier(model, backend, base=base, **options)
    from ..backends.loading import load

    return load(model, backend, **options)


__all__ = ["METHODS", "TRAINER_METHODS", "finetune", "load_classifier", "rank_digests"]
