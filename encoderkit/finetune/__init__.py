"""Transfer learning: linear probes on frozen embeddings, and freeze / LoRA / full fine-tuning.

``finetune(model, data, out, method=..., task=...)``; ``task`` (``objectives.OBJECTIVES``) is
``sequence-classification`` (the default), ``token-classification`` (``tokens.py``: NER with
seqeval), ``question-answering`` (``qa.py``: SQuAD windows, EM/F1) or ``mlm`` (``mlm.py``: dynamic
masking, perplexity); every task trains with freeze / lora / full and ``nproc``:

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
from .objectives import OBJECTIVES, SEQUENCE_CLASSIFICATION, TASK_NAMES

REPORT = "train_report.md"
CURVE = "train_curve.png"
# Beyond these the trainer's own arithmetic breaks (epochs x steps overflows) long before a run ends.
MAX_EPOCHS, MAX_STEPS, MAX_BATCH = 1e6, 10**9, 10**6
# The labelled data set the project ships (package data): 280 hand-written sentences in four
# topics (sports, food, technology, weather), 70 each; every fifth sentence of each topic is held out.
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
TOPICS_TRAIN = DATA_DIR / "topics_train.jsonl"
TOPICS_TEST = DATA_DIR / "topics_test.jsonl"
# The other shipped data sets (encoderkit/data/README.md): tagged sentences (PER, ORG, LOC, DATE),
# SQuAD-style questions (some unanswerable) and a baking/brewing corpus for masked-LM training.
NER_TRAIN = DATA_DIR / "ner_train.jsonl"
NER_TEST = DATA_DIR / "ner_test.jsonl"
QA_TRAIN = DATA_DIR / "qa_train.jsonl"
QA_TEST = DATA_DIR / "qa_test.jsonl"
MLM_TRAIN = DATA_DIR / "baking_train.txt"
MLM_TEST = DATA_DIR / "baking_test.txt"


def finetune(model: str | Path, data: str | Path, out: str | Path, *, method: str = "lora",
             eval_data: str | Path | None = None, text_column: str = "text", pair_column: str | None = None,
             label_column: str = "label", unfreeze_top: int = 0, lora_r: int = 8, lora_alpha: int = 16,
             lora_targets: tuple[str, ...] | str = ("query", "value"), epochs: float = 3.0, lr: float | None = None,
             batch_size: int = 16, seed: int = 0, nproc: int = 1, backend: str | None = None,
             pooling: str = "mean", layer: int = -1, normalize: bool = False, dropout: float | None = None,
             group_by_length: bool = True, shuffle: bool = True, optimizer: str = "adamw_torch",
             max_steps: int = -1, warmup: float = 0.0, force: bool = False,
             quiet: bool = False, task: str = SEQUENCE_CLASSIFICATION, max_length: int | None = None,
             doc_stride: int | None = None, max_answer_length: int | None = None,
             mlm_probability: float | None = None, whole_word_mask: bool = False) -> dict[str, Any]:
    """Fine-tune ``model`` on labelled ``data`` and write the result to ``out`` (atomically).

    Args:
        method: probe | freeze | lora | full.
        task: sequence-classification | token-classification | question-answering | mlm.
        max_length: tokens per text (classification, token classification; default the model's), per
            window (question-answering, default 384) or per block (mlm, default 128).
        doc_stride: (question-answering) tokens shared by consecutive windows of a context (default 128).
        max_answer_length: (question-answering) the longest answer decoded on --eval, in tokens (default 15).
        mlm_probability: (mlm) the share of tokens masked, in (0, 1) (default 0.15).
        whole_word_mask: (mlm) mask every piece of a chosen word.
        backend: (probe) the backend computing the embeddings; ``model`` must then be loadable on it.
        nproc: (freeze/lora/full) DDP processes via torchrun (gloo on CPU, NCCL on GPU).
        dropout: None keeps the checkpoint's dropout; 0 turns it off (deterministic runs).
        lr: default 1e-3 for lora, 5e-5 otherwise.
        warmup: (freeze/lora/full) the share of the steps, in [0, 1), over which the learning rate rises
            linearly from 0 to ``lr`` (then falls linearly to 0 as before). 0: no warmup.
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
                    dropout=dropout, max_steps=max_steps, warmup=warmup, unfreeze_top=unfreeze_top, lora_r=lora_r,
                    lora_alpha=lora_alpha, lora_targets=lora_targets, pooling=pooling, layer=layer)
    out = Path(out)
    # --force replaces OUT: it must not be (or hold, or sit inside) the model or the data
    refuse_overlap(out, [("model", local_model_path(model)), ("--data file", Path(data)),
                         ("--eval file", Path(eval_data) if eval_data is not None else None)])
    refuse_special(out)
    task_options = check_task_options(task, method, max_length=max_length, doc_stride=doc_stride,
                                      max_answer_length=max_answer_length, mlm_probability=mlm_probability,
                                      whole_word_mask=whole_word_mask, pair_column=pair_column)
    if task != SEQUENCE_CLASSIFICATION:
        return _finetune_task(model, data, out, task=task, method=method, eval_data=eval_data,
                              text_column=text_column, options=task_options, force=force,
                              config=dict(unfreeze_top=unfreeze_top, lora_r=lora_r, lora_alpha=lora_alpha,
                                          lora_targets=tuple(lora_targets), epochs=float(epochs), lr=lr,
                                          batch_size=batch_size, seed=seed, dropout=dropout,
                                          group_by_length=group_by_length, shuffle=shuffle, optimizer=optimizer,
                                          max_steps=max_steps, warmup=float(warmup), nproc=nproc, quiet=quiet))
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
                dropout=dropout, group_by_length=group_by_length, shuffle=shuffle, optimizer=optimizer, max_steps=max_steps, warmup=float(warmup), nproc=nproc,
                quiet=quiet,
                **({"max_length": task_options["max_length"]} if task_options.get("max_length") else {}))
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
                    lora_r, lora_alpha, lora_targets, pooling: str = "mean", layer=-1, warmup=0.0) -> None:
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
    if not _real(warmup) or not math.isfinite(warmup) or not 0 <= warmup < 1:
        raise bad("--warmup", warmup, "a share of the steps in [0, 1)")
    if warmup and method == "probe":
        raise InputError("--warmup applies to freeze/lora/full (a probe trains a logistic regression)")
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
def check_task_options(task: str, method: str, *, max_length=None, doc_stride=None, max_answer_length=None,
                       mlm_probability=None, whole_word_mask=False, pair_column=None) -> dict[str, Any]:
    """Check the task and the options that belong to it before anything is read or trained; an
    option given to a task it does not apply to is an error too (it would be silently ignored).

    Returns:
        The task's options with their defaults filled in (``max_length`` stays None: the model's).
    Raises:
        InputError: one line naming the flag.
    """
    if task not in OBJECTIVES:
        raise InputError(f"--task must be one of {', '.join(TASK_NAMES)}, got {task!r}")

    def integer(name, v, low):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise InputError(f"--{name} must be an integer >= {low}, got {v!r}")

    given = {"--doc-stride": doc_stride is not None, "--max-answer-length": max_answer_length is not None,
             "--mlm-probability": mlm_probability is not None, "--whole-word-mask": bool(whole_word_mask),
             "--pair-column": pair_column is not None}
    owner = {"--doc-stride": "question-answering", "--max-answer-length": "question-answering",
             "--mlm-probability": "mlm", "--whole-word-mask": "mlm", "--pair-column": SEQUENCE_CLASSIFICATION}
    for flag, on in given.items():
        if on and owner[flag] != task:
            raise InputError(f"{flag} applies to --task {owner[flag]}, not {task}")
    if method == "probe" and task != SEQUENCE_CLASSIFICATION:
        raise InputError(f"--method probe fits a classifier on pooled embeddings (sequence-classification); "
                         f"--task {task} trains with freeze, lora or full")
    opts: dict[str, Any] = {"max_length": max_length}
    if max_length is not None:
        integer("max-length", max_length, 8)
    if task == "question-answering":
        doc_stride = 128 if doc_stride is None else doc_stride
        max_answer_length = 15 if max_answer_length is None else max_answer_length
        integer("doc-stride", doc_stride, 0)
        integer("max-answer-length", max_answer_length, 1)
        window = OBJECTIVES[task].default_length if max_length is None else max_length
        if doc_stride >= window:
            raise InputError(f"--doc-stride {doc_stride} must be less than --max-length {window} (the window "
                             "length): consecutive windows overlap by the stride")
        opts |= {"doc_stride": doc_stride, "max_answer_length": max_answer_length}
    if task == "mlm":
        mlm_probability = 0.15 if mlm_probability is None else mlm_probability
        if isinstance(mlm_probability, bool) or not isinstance(mlm_probability, (int, float)) \
                or not 0 < mlm_probability < 1:
            raise InputError(f"--mlm-probability must be in (0, 1), got {mlm_probability!r}")
        opts |= {"mlm_probability": float(mlm_probability), "whole_word_mask": bool(whole_word_mask)}
    return opts


def _finetune_task(model, data, out, *, task: str, method: str, eval_data, text_column: str, options: dict,
                   force: bool, config: dict) -> dict[str, Any]:
    """Token classification, question answering, masked LM: read and check the data, check the
    options against the model, train (one process or torchrun), write the report."""
    from ..storage.checkpoint import verified_checkpoint_directory
    from ..storage.files import atomic_dir
    from ..storage.manifest import write_manifest

    objective = OBJECTIVES[task]
    impl = objective.impl()
    labels: tuple[str, ...] = ()
    if task == "token-classification":
        train = impl.read_tagged(data, text_column=text_column)
        labels = impl.tag_names(train)
        ev = impl.read_tagged(eval_data, text_column=text_column) if eval_data is not None else None
        train_payload = train.payload(labels)
        eval_payload = ev.payload(labels) if ev is not None else None  # an unknown tag: its row
    elif task == "question-answering":
        train = impl.read_questions(data)
        ev = impl.read_questions(eval_data) if eval_data is not None else None
        train_payload, eval_payload = train.payload(), ev.payload() if ev is not None else None
        options["handle_impossible_answer"] = train.unanswerable > 0
    else:
        train = impl.read_corpus(data, text_column=text_column)
        ev = impl.read_corpus(eval_data, text_column=text_column) if eval_data is not None else None
        train_payload, eval_payload = train.payload(), ev.payload() if ev is not None else None
    out = Path(out)
    if out.exists() and not force:
        raise InputError(f"{out} already exists; pass --force to replace it")
    if method == "freeze":
        _check_unfreeze_top(model, config["unfreeze_top"])
    # its manifest checked (an init-random or finetune output); a `convert` output: its HF layout
    directory = verified_checkpoint_directory(model)
    _check_length(directory, options)
    if method == "lora":
        _require("peft", "--method lora")
    _require("accelerate", f"--method {method}")
    if task == "token-classification":
        _require("seqeval", "--task token-classification")
    lr = config.pop("lr")
    cfg = TrainConfig(model_dir=str(directory), method=method, task=task, train=train_payload, eval=eval_payload,
                      labels=list(labels), lr=lr if lr is not None else (1e-3 if method == "lora" else 5e-5),
                      **config, **options)
    with atomic_dir(out, force=force) as tmp:
        metrics = _train(cfg, tmp)
        metrics["model"], metrics["data"] = str(model), str(data)
        metrics |= {k: v for k, v in options.items() if k != "max_length"}
        (tmp / "train_metrics.json").write_text(json.dumps(
            json.loads((tmp / "train_metrics.json").read_text()) | {"model": str(model), "data": str(data)},
            indent=2) + "\n")
        (tmp / REPORT).write_text(render_task_report(metrics, labels, train, ev))
        _curve(metrics, tmp / CURVE)
        write_manifest(tmp, {"kind": "finetune", "method": method, "task": task, "source": str(model)})
    return metrics


def _check_length(directory: Path, options: dict) -> None:
    """--max-length against the model's position table (before the model is loaded)."""
    if options.get("max_length") is None:
        return
    from ..storage.checkpoint import read_spec

    limit = min(512, read_spec(Path(directory), heads=()).max_tokens_per_text)
    if options["max_length"] > limit:
        raise InputError(f"--max-length {options['max_length']} exceeds what the model holds ({limit} tokens)")
    if options.get("doc_stride") is not None and options["doc_stride"] >= options["max_length"]:
        raise InputError(f"--doc-stride {options['doc_stride']} must be less than --max-length {options['max_length']}")


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


def _schedule(m: dict[str, Any]) -> list[str]:
    """The learning-rate line of a trained (not probed) run."""
    if m.get("lr") is None:
        return []
    warm = m.get("warmup_steps") or 0
    return [f"- learning rate: {m['lr']:g}, " + (f"rising linearly from 0 over the first {warm} steps, then " if warm else "")
            + "falling linearly to 0"]


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
    lines += _schedule(m)
    lines += [f"- train time: {m['train_seconds']:.1f} s" + (f" ({m['steps']} steps)" if "steps" in m else ""),
              f"- peak RSS: {m['peak_rss_mb']:.0f} MB", f"- processes: {m.get('world_size', 1)}",
              f"- trainable parameters: {m.get('trainable_parameters')}" +
              (f" of {m['parameters']}" if m.get("parameters") else "")]
    if m.get("backend"):
        lines.append(f"- embeddings from backend: {m['backend']}")
    lines += ["", f"![loss and accuracy]({CURVE})", ""]
    return "\n".join(lines) + "\n"


def render_task_report(m: dict[str, Any], labels, train, ev) -> str:
    """train_report.md of a token-classification / question-answering / mlm run."""
    objective = OBJECTIVES[m["task"]]
    lines = ["# encoderkit fine-tuning report", "", f"- model: `{m['model']}`", f"- task: {m['task']}",
             f"- method: {m['method']}"]
    impl = objective.impl()
    lines += impl.report_lines(m, labels, train, ev) if m["task"] == "token-classification" else \
        impl.report_lines(m, train, ev)
    lines += _schedule(m)
    lines += [f"- train time: {m['train_seconds']:.1f} s ({m['steps']} steps, {m.get('train_features')} "
              f"{'blocks' if m['task'] == 'mlm' else 'windows' if m['task'] == 'question-answering' else 'sentences'})",
              f"- peak RSS: {m['peak_rss_mb']:.0f} MB", f"- processes: {m.get('world_size', 1)}",
              f"- trainable parameters: {m.get('trainable_parameters')}" +
              (f" of {m['parameters']}" if m.get("parameters") else ""),
              "", f"![loss and {objective.metric_label}]({CURVE})", ""]
    return "\n".join(lines) + "\n"


def _curve(m: dict[str, Any], path: Path) -> None:
    """Training loss per step and the held-out figure per epoch (one PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = m.get("history") or []
    steps = [(h["step"], h["loss"]) for h in hist if "loss" in h and "step" in h]
    objective = OBJECTIVES[m.get("task", SEQUENCE_CLASSIFICATION)]
    key = objective.metric
    acc = [(h["epoch"], h[key]) for h in hist if key in h]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    if steps:
        a1.plot(*zip(*steps), lw=1)
    else:
        a1.text(0.5, 0.5, "no gradient steps\n(linear probe)", ha="center", va="center")
    a1.set_xlabel("step")
    a1.set_ylabel("training loss")
    if acc:
        a2.plot(*zip(*acc), marker="o")
    elif m.get(key) is not None:
        a2.bar(["held-out"], [m[key]])
    if key == "eval_accuracy":
        a2.set_ylim(0, 1)
    elif key == "eval_f1" and m.get("task") == "question-answering":
        a2.set_ylim(0, 100)
    elif key == "eval_f1":
        a2.set_ylim(0, 1)
    else:
        a2.set_yscale("log")
    a2.set_ylabel(objective.metric_label)
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


__all__ = ["METHODS", "TASK_NAMES", "TRAINER_METHODS", "finetune", "load_classifier", "rank_digests"]
