"""`encoderkit classify` and `encoderkit finetune`: registered into the main CLI by ``add_parsers``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def cmd_classify(a: argparse.Namespace) -> None:
    from ..cli import emit, runtime_options
    from . import load_classifier

    if a.pair is not None and len(a.pair) != len(a.texts):
        from ..errors import InputError

        raise InputError(f"{len(a.texts)} texts but {len(a.pair)} --pair texts; give one pair text per text")
    clf = load_classifier(a.model, a.backend, base=a.base, **runtime_options(a))
    results = clf.classify(a.texts, a.pair, top_k=a.top_k, truncate=a.truncate)
    if a.json:
        emit(json.dumps(results, ensure_ascii=False))
        return
    for i, (text, preds) in enumerate(zip(a.texts, results)):
        emit(text if a.pair is None else f"{text} || {a.pair[i]}")
        for p in preds:
            emit(f"  {p['score']:.4f}  {p['label']}")


def cmd_finetune(a: argparse.Namespace) -> None:
    from ..cli import emit
    from . import REPORT, finetune

    m = finetune(a.model, a.data, Path(a.out), method=a.method, eval_data=a.eval, text_column=a.text_column,
                 pair_column=a.pair_column, label_column=a.label_column, unfreeze_top=a.unfreeze_top,
                 lora_r=a.lora_r, lora_alpha=a.lora_alpha, lora_targets=a.lora_targets, epochs=a.epochs, lr=a.lr,
                 batch_size=a.batch_size, seed=a.seed, nproc=a.nproc, backend=a.backend, pooling=a.pooling,
                 layer=a.layer, dropout=a.dropout, max_steps=a.max_steps, force=a.force,
                 quiet=getattr(a, "quiet", False))
    acc = f", held-out accuracy {m['eval_accuracy']:.4f}" if m.get("eval_accuracy") is not None else ""
    emit(f"wrote {a.out} ({m['method']}{acc}; report: {Path(a.out) / REPORT})")


def add_parsers(sub, parents: list[argparse.ArgumentParser]) -> None:
    from ..cli import _backend_help, backend_name
    from ..tasks.embed import POOLINGS
    from .trainer import METHODS

    s = sub.add_parser("classify", parents=parents,
                       help="sequence classification (pipeline('text-classification') semantics)")
    s.add_argument("model", help="checkpoint / convert output with a classification head, or a probe dir")
    s.add_argument("texts", nargs="+", metavar="TEXT")
    s.add_argument("--pair", nargs="+", default=None, metavar="TEXT_B", help="the second text of each pair")
    s.add_argument("--backend", default=None, type=backend_name, help=_backend_help())
    s.add_argument("--top-k", type=int, default=1, help="labels per text, best first")
    s.add_argument("--base", default=None, help="(probe) the base model to embed with, e.g. its convert output")
    s.add_argument("--threads", type=int, default=None, help="intra-op threads (positive)")
    s.add_argument("--max-tokens", type=int, default=None, help="token budget per batch (positive)")
    s.add_argument("--truncate", action="store_true", help="cut texts longer than the model")
    s.add_argument("--json", action="store_true", help="one list of {label, score} per text")
    s.set_defaults(func=cmd_classify)

    s = sub.add_parser("finetune", parents=parents, help="probe / freeze / LoRA / full fine-tuning of a classifier")
    s.add_argument("model", help="checkpoint dir or packaged name (probe: also a convert output)")
    s.add_argument("--data", required=True, help="training examples (.jsonl or .csv)")
    s.add_argument("--eval", default=None, help="held-out examples (.jsonl or .csv)")
    s.add_argument("--out", required=True)
    s.add_argument("--method", default="lora", choices=list(METHODS))
    s.add_argument("--text-column", default="text")
    s.add_argument("--pair-column", default=None)
    s.add_argument("--label-column", default="label")
    s.add_argument("--unfreeze-top", type=int, default=0, help="(freeze) encoder layers left trainable, from the top")
    s.add_argument("--lora-r", type=int, default=8)
    s.add_argument("--lora-alpha", type=int, default=16)
    s.add_argument("--lora-targets", default="query,value", help="comma list of projection names")
    s.add_argument("--epochs", type=float, default=3.0)
    s.add_argument("--lr", type=float, default=None, help="default: 1e-3 for lora, 5e-5 otherwise")
    s.add_argument("--batch-size", type=int, default=16, help="global batch (split across --nproc)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--nproc", type=int, default=1, help="DDP processes via torchrun (gloo on CPU, NCCL on GPU)")
    s.add_argument("--dropout", type=float, default=None, help="override dropout (0: off, deterministic)")
    s.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (overrides --epochs)")
    s.add_argument("--backend", default=None, type=backend_name, help="(probe) " + _backend_help())
    s.add_argument("--pooling", default="mean", choices=list(POOLINGS), help="(probe)")
    s.add_argument("--layer", type=int, default=-1, help="(probe) hidden layer to pool")
    s.add_argument("--force", action="store_true", help="replace OUT if it exists")
    s.set_defaults(func=cmd_finetune)
