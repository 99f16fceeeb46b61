"""The applications' commands: `bench`, `attention` (the viewer), `package` (deployment bundles),
`finetune`. Each parses its flags and calls the application's Python API."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import Context, add_runtime_args, backend_help, backend_name, runtime_options


def add_parsers(sub, parents: list[argparse.ArgumentParser]) -> None:
    _bench_parser(sub, parents)
    _attention_parser(sub, parents)
    _package_parser(sub, parents)
    _serve_bundle_parser(sub, parents)
    _finetune_parser(sub, parents)


# ------------------------------------------------------------------ bench
def _bench_parser(sub, parents) -> None:
    from ..tasks import bench_tasks

    s = sub.add_parser("bench", parents=parents, help="throughput/latency of backends against the usual tools")
    s.add_argument("model")
    s.add_argument("--backends", default=None,
                   help="comma list (default: every installed backend the model directory holds)")
    s.add_argument("--task", default=",".join(bench_tasks()), help=f"comma list of {', '.join(bench_tasks())}")
    s.add_argument("--out", default="bench-out")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--quick", action="store_true", help="small workloads (tests)")
    s.add_argument("--optimum-python", default=None, metavar="PYTHON",
                   help="python of optimum's venv (make optimum-venv): adds optimum's O2 and int8 recipe as "
                        "embed peers (default: $ENCODERKIT_OPTIMUM_PYTHON; without it they are listed as skipped)")
    s.set_defaults(func=cmd_bench)


def cmd_bench(a: argparse.Namespace, ctx: Context) -> None:
    from ..bench import run_bench

    backends = [b for b in a.backends.split(",") if b] if a.backends else None
    run_bench(a.model, backends=backends, tasks=[t for t in a.task.split(",") if t], out=Path(a.out),
              repeats=a.repeats, quick=a.quick, optimum_python=a.optimum_python)


# ------------------------------------------------------------------ attention (the viewer)
def attention_backend(value: str) -> str:
    """A backend name that gives attention probabilities (its catalog row is not last-layer-only).

    Raises:
        UnknownNameError: unknown name. argparse.ArgumentTypeError: a last-layer-only backend,
            naming the ones to use (argparse prints it as the flag's error).
    """
    from ..backends.catalog import BACKENDS

    name = backend_name(value)
    if BACKENDS[name].last_layer_only:
        raise argparse.ArgumentTypeError(
            f"backend {name} gives the last layer only, no attention probabilities; choose one of: "
            f"{', '.join(b.name for b in BACKENDS.values() if not b.last_layer_only)}")
    return name


def _attention_parser(sub, parents) -> None:
    from ..backends.catalog import BACKENDS

    names = ", ".join(b.name for b in BACKENDS.values() if not b.last_layer_only)
    s = sub.add_parser("attention", parents=parents, help="write an interactive attention page (self-contained HTML)")
    s.add_argument("model", help="checkpoint dir, hub id, packaged name (minilm) or convert output")
    s.add_argument("text", metavar="TEXT")
    s.add_argument("--pair", metavar="TEXT_B", default=None, help="second text: the tokenizer's pair encoding")
    add_runtime_args(s, backend_type=attention_backend, backend_help_text=names)
    s.add_argument("--compare", metavar="B2", default=None, type=attention_backend,
                   help=f"also run backend B2 ({names}) and show B2 minus BACKEND")
    s.add_argument("--out", required=True, help="the HTML file to write")
    s.add_argument("--png", default=None, help="also write a static layers x heads grid (matplotlib)")
    s.add_argument("--layers", default=None, help="layers to include, e.g. 0-23 or 0,5,11 (default: all)")
    s.add_argument("--heads", default=None, help="heads to include, e.g. 0,3,7 (default: all)")
    s.add_argument("--hide-special", action="store_true", help="open with special tokens hidden")
    s.add_argument("--thumb-scale", choices=["absolute", "own", "log", "uniform"], default=None,
                   help="the model view's thumbnail colours to open with (a menu on the page switches): absolute "
                        "0-1, each to its own range, log attention, or relative to uniform 1/n (default: absolute "
                        "up to 128 tokens, uniform above)")
    s.set_defaults(func=cmd_attention)


def parse_indices(text: str | None, n: int, what: str) -> list[int] | None:
    """``"0-3,8,10-11"`` -> ``[0, 1, 2, 3, 8, 10, 11]``, checked against ``n`` (None: all).

    Raises:
        InputError: not a list of indices and ranges, out of 0..n-1, a backwards range, or a repeat.
    """
    from ..core.errors import InputError

    if text is None:
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            lo, _, hi = part.partition("-")
            a, b = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise InputError(f"--{what} {text!r}: expected indices and ranges like 0-3,8") from None
        if b < a:
            raise InputError(f"--{what} {text!r}: range {part} runs backwards")
        if not (0 <= a and b < n):
            raise InputError(f"--{what} {text!r}: out of range, the model has {n} {what} (0-{n - 1})")
        out.extend(range(a, b + 1))
    if len(set(out)) != len(out):
        raise InputError(f"--{what} {text!r}: an index is listed twice")
    return out


def cmd_attention(a: argparse.Namespace, ctx: Context) -> None:
    import numpy as np

    from ..backends.loading import load
    from ..core.errors import InputError
    from ..core.progress import bar as progress_bar
    from ..storage.files import atomic_write_text
    from ..viewer import attention_record, check_outputs, render

    from ..storage.checkpoint import local_model_path

    out = Path(a.out)
    check_outputs(out, Path(a.png) if a.png else None, local_model_path(a.model))
    if a.compare is not None and a.compare == a.backend:
        raise InputError(f"--compare {a.compare} is the same backend as --backend")
    steps = ["load", "attention"] + (["load compare", "attention compare"] if a.compare else []) + ["render"] \
        + (["png"] if a.png else [])
    bar = progress_bar(total=len(steps), desc="attention", unit="step")
    opts = runtime_options(a)
    bar.set_postfix_str("load")
    rt = load(a.model, a.backend, **opts)
    layers = parse_indices(a.layers, rt.spec.num_layers, "layers")
    heads = parse_indices(a.heads, rt.spec.num_heads, "heads")
    bar.update()
    bar.set_postfix_str("attention")
    record = attention_record(rt, a.text, a.pair, truncate=a.truncate)
    bar.update()
    compare = None
    if a.compare:
        bar.set_postfix_str("load compare")
        rt2 = load(a.model, a.compare, **opts)
        bar.update()
        bar.set_postfix_str("attention compare")
        compare = attention_record(rt2, a.text, a.pair, truncate=a.truncate)
        bar.update()
    bar.set_postfix_str("render")
    page = render(record, compare=compare, layers=layers, heads=heads, hide_special=a.hide_special,
                  thumb_scale=a.thumb_scale)
    png = None
    if a.png:
        from ..viewer.png import png_bytes

        bar.set_postfix_str("png")
        png = png_bytes(record, layers=layers, heads=heads, hide_special=a.hide_special)
    # both outputs are complete in memory before either is written: a failure leaves neither
    atomic_write_text(out, page)
    bar.update()
    if png is not None:
        from ..storage.files import atomic_write_bytes

        atomic_write_bytes(Path(a.png), png)
        bar.update()
    bar.close()
    n_l, n_h = len(layers or range(rt.spec.num_layers)), len(heads or range(rt.spec.num_heads))
    vs = f", compared with {compare.backend}" if compare else ""
    if compare is not None and np.array_equal(compare.probs, record.probs):
        ctx.say(f"warning: {compare.backend} returned attention identical to {record.backend}'s (the same graph "
                "computes both), so the compare view shows zeros")
    size = len(page.encode())
    size_text = f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.0f} kB"
    ctx.emit(f"wrote {out} ({size_text}: {len(record.tokens)} tokens, {n_l} layers x {n_h} heads, {record.backend}{vs})"
             + (f" and {a.png}" if a.png else ""))


# ------------------------------------------------------------------ package (deployment bundles)
def _package_parser(sub, parents) -> None:
    from ..deploy import TARGETS
    from ..deploy.common import QUANTIZE
    from ..tasks import bundle_tasks
    from ..tasks.kernels import POOLINGS

    s = sub.add_parser("package", parents=parents, help="package a converted model for deployment (self-verifying bundle)")
    s.add_argument("converted", help="an `encoderkit convert` output directory")
    s.add_argument("--target", required=True, choices=list(TARGETS))
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--quantize", default="none", choices=list(QUANTIZE))
    s.add_argument("--tasks", default=None,
                   help=f"comma list of {','.join(bundle_tasks())} (default: all the model supports)")
    s.add_argument("--max-length", type=int, default=None, help="longest input in tokens (default: the model's)")
    s.add_argument("--pooling", default=None, choices=list(POOLINGS),
                   help="put this pooling into the bundled graph (sentence_embedding output)")
    s.add_argument("--normalize", action="store_true", help="with --pooling: L2-normalise in the graph too")
    s.add_argument("--ort", action="store_true", help="onnx/node: also write model.ort (ONNX Runtime Mobile)")
    s.add_argument("--name", default=None, help="model name in triton/tf-serving layouts")
    s.add_argument("--threads", type=int, default=None,
                   help="web: the page's wasm threads (default: the browser's cores, at most 4; 1 without "
                        "cross-origin isolation)")
    s.add_argument("--force", action="store_true", help="replace OUT if it exists")
    s.set_defaults(func=cmd_package)


def cmd_package(a: argparse.Namespace, ctx: Context) -> None:
    from ..core.progress import status
    from ..deploy import package

    with status() as say:
        bundle = package(a.converted, a.target, a.out, quantize=a.quantize, tasks=a.tasks,
                         max_length=a.max_length, pooling=a.pooling, normalize=a.normalize,
                         ort_format=a.ort, name=a.name, threads=a.threads, force=a.force, progress=say)
    fp = bundle["footprint"]
    line = f"wrote {a.out} ({a.target}, {bundle['quantize']}, {fp['bundle_bytes'] / 1e6:.1f} MB"
    if "load_seconds" in fp:
        line += (f"; runner loads in {fp['load_seconds']:.2f} s, one text {fp['embed_one_text_seconds'] * 1e3:.1f} ms, "
                 f"peak RSS {fp['peak_rss_mb']:.0f} MB")
    ctx.emit(line + ")")
    for ln in bundle.get("self_test", []):
        ctx.emit(f"  self-test: {ln}")
    if a.target == "web":
        ctx.emit(f"  serve it: encoderkit serve-bundle {a.out}   (or: cd {a.out} && python3 serve.py)")


def _serve_bundle_parser(sub, parents) -> None:
    s = sub.add_parser("serve-bundle", parents=parents,
                       help="serve a --target web bundle on 127.0.0.1 (with cross-origin isolation headers)")
    s.add_argument("bundle", type=Path, help="a `encoderkit package --target web` output directory")
    s.add_argument("--port", type=int, default=8000, help="0: any free port")
    s.add_argument("--no-isolation", action="store_true",
                   help="leave out COOP/COEP (the page then runs on one wasm thread)")
    s.set_defaults(func=cmd_serve_bundle)


def cmd_serve_bundle(a: argparse.Namespace, ctx: Context) -> None:
    from ..core.errors import InputError
    from ..deploy.web import serve

    if not 0 <= a.port <= 65535:
        raise InputError(f"--port must be 0..65535, got {a.port}")
    serve(a.bundle, port=a.port, isolation=not a.no_isolation, say=ctx.emit)


# ------------------------------------------------------------------ finetune
def _finetune_parser(sub, parents) -> None:
    from ..finetune.objectives import SEQUENCE_CLASSIFICATION, TASK_NAMES
    from ..finetune.trainer import METHODS
    from ..tasks.kernels import POOLINGS

    s = sub.add_parser("finetune", parents=parents,
                       help="probe / freeze / LoRA / full fine-tuning: classifier, token classifier (NER), "
                            "extractive QA, masked LM")
    s.add_argument("model", help="checkpoint dir or packaged name (probe: also a convert output)")
    s.add_argument("--task", default=SEQUENCE_CLASSIFICATION, choices=list(TASK_NAMES),
                   help="what to train (default: sequence-classification)")
    s.add_argument("--data", required=True,
                   help="training data: .jsonl/.csv of text+label; token-classification: .jsonl of tokens+tags or "
                        "text+entities; question-answering: SQuAD .jsonl; mlm: .txt (a text per line) or .jsonl")
    s.add_argument("--eval", default=None, help="held-out data, the same format as --data")
    s.add_argument("--out", required=True)
    s.add_argument("--method", default="lora", choices=list(METHODS))
    s.add_argument("--text-column", default="text")
    s.add_argument("--pair-column", default=None)
    s.add_argument("--label-column", default="label")
    s.add_argument("--max-length", type=int, default=None,
                   help="tokens per text (default: the model's); question-answering: per window (384); "
                        "mlm: per block (128)")
    s.add_argument("--doc-stride", type=int, default=None,
                   help="(question-answering) tokens shared by consecutive windows of a context (128)")
    s.add_argument("--max-answer-length", type=int, default=None,
                   help="(question-answering) longest answer decoded on --eval, in tokens (15)")
    s.add_argument("--mlm-probability", type=float, default=None,
                   help="(mlm) share of the tokens masked, in (0, 1) (0.15; 80%% mask token, 10%% random, 10%% kept)")
    s.add_argument("--whole-word-mask", action="store_true", help="(mlm) mask every piece of a chosen word")
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
    s.add_argument("--warmup", type=float, default=0.0,
                   help="share of the steps over which the learning rate rises from 0 to --lr, in [0, 1) "
                        "(default 0; pretraining from scratch wants about 0.06)")
    s.add_argument("--backend", default=None, type=backend_name, help="(probe) " + backend_help())
    s.add_argument("--pooling", default="mean", choices=list(POOLINGS), help="(probe)")
    s.add_argument("--layer", type=int, default=-1, help="(probe) hidden layer to pool")
    s.add_argument("--force", action="store_true", help="replace OUT if it exists")
    s.set_defaults(func=cmd_finetune)


def cmd_finetune(a: argparse.Namespace, ctx: Context) -> None:
    from ..finetune import REPORT, finetune

    m = finetune(a.model, a.data, Path(a.out), method=a.method, eval_data=a.eval, text_column=a.text_column,
                 pair_column=a.pair_column, label_column=a.label_column, unfreeze_top=a.unfreeze_top,
                 lora_r=a.lora_r, lora_alpha=a.lora_alpha, lora_targets=a.lora_targets, epochs=a.epochs, lr=a.lr,
                 batch_size=a.batch_size, seed=a.seed, nproc=a.nproc, backend=a.backend, pooling=a.pooling,
                 layer=a.layer, dropout=a.dropout, max_steps=a.max_steps, warmup=a.warmup,
                 force=a.force, quiet=ctx.quiet,
                 task=a.task, max_length=a.max_length, doc_stride=a.doc_stride,
                 max_answer_length=a.max_answer_length, mlm_probability=a.mlm_probability,
                 whole_word_mask=a.whole_word_mask)
    ctx.emit(f"wrote {a.out} ({m['method']}{summary(m)}; report: {Path(a.out) / REPORT})")


def summary(m: dict) -> str:
    """The held-out figures of a finetune run, for its one line."""
    task = m.get("task", "sequence-classification")
    if task == "token-classification" and m.get("eval_f1") is not None:
        return f", {task}, held-out entity F1 {m['eval_f1']:.4f}"
    if task == "question-answering" and m.get("eval_f1") is not None:
        return f", {task}, held-out exact match {m['eval_exact_match']:.2f} F1 {m['eval_f1']:.2f}"
    if task == "mlm" and m.get("eval_perplexity") is not None:
        return f", {task}, held-out perplexity {m['eval_perplexity_before']:.2f} -> {m['eval_perplexity']:.2f}"
    if m.get("eval_accuracy") is not None:
        return f", held-out accuracy {m['eval_accuracy']:.4f}"
    return f", {task}" if task != "sequence-classification" else ""
