"""freeze / lora / full: train ``*ForSequenceClassification`` (or, with ``task``, a token classifier,
an extractive QA head or a masked LM: ``objectives.OBJECTIVES``) with transformers' ``Trainer``.

Dynamic padding through the task's collator, length-grouped batches (``group_by_length``),
evaluation per epoch (classification: the Trainer's accuracy; the other tasks: their module's
evaluator, on rank 0). ``train_into`` writes a standard Hugging Face checkpoint directory
(safetensors, config.json with id2label, tokenizer) into a directory the caller made atomic.
Under torchrun (``--nproc``) every rank runs ``train_into``; the Trainer wraps the model in DDP
(gloo on CPU, NCCL on GPU) and only rank 0 writes files.
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..core.heads import CLASSIFICATION

METHODS = ("probe", "freeze", "lora", "full")
TRAINER_METHODS = ("freeze", "lora", "full")
ADAPTER_DIR = "adapter"  # the unmerged LoRA adapter, beside the merged checkpoint
ERROR_FILE = "error.json"  # under OUT/ranks: a torchrun worker's refusal, relayed as one line


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; JSON-serialisable (it is handed to torchrun workers)."""

    model_dir: str  # the base checkpoint directory (resolved)
    method: str
    train: dict  # {"texts", "pairs", "labels"} (label indices)
    eval: dict | None
    labels: list[str]
    epochs: float = 3.0
    lr: float = 5e-5
    batch_size: int = 16  # the global batch: split across --nproc processes
    seed: int = 0
    unfreeze_top: int = 0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] = ("query", "value")
    dropout: float | None = None  # None: the checkpoint's own; 0 turns every dropout off
    group_by_length: bool = True
    shuffle: bool = True  # False: sequential order (DDP equivalence checks)
    optimizer: str = "adamw_torch"  # transformers' `optim` name ("sgd" in the DDP equivalence test)
    max_steps: int = -1
    warmup: float = 0.0  # share of the steps over which the learning rate rises linearly from 0
    nproc: int = 1
    quiet: bool = False
    task: str = "sequence-classification"  # objectives.OBJECTIVES
    max_length: int | None = None  # tokens per text / QA window / MLM block (None: the task's default)
    doc_stride: int = 128  # (question-answering) overlap of a context's windows
    max_answer_length: int = 15  # (question-answering) longest answer decoded, in tokens
    handle_impossible_answer: bool = False  # (question-answering) the empty answer may win
    mlm_probability: float = 0.15  # (mlm)
    whole_word_mask: bool = False  # (mlm)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


class _Dataset:
    """Tokenized examples as the Trainer wants them (dicts of lists; the collator pads)."""

    def __init__(self, tokenizer, data: dict, max_length: int):
        pairs = data.get("pairs")
        enc = tokenizer(list(data["texts"]), list(pairs) if pairs else None, truncation=True, max_length=max_length)
        self.rows = [{k: enc[k][i] for k in enc} | {"labels": int(data["labels"][i])}
                     for i in range(len(data["texts"]))]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def build_model(cfg: TrainConfig):
    """The task's model class (*ForSequenceClassification, *ForTokenClassification,
    *ForQuestionAnswering, *ForMaskedLM) from the base checkpoint, with labels and the method applied.

    Returns:
        (model to train, tokenizer, the architecture record)
    """
    import transformers

    from ..storage.checkpoint import read_spec
    from .objectives import OBJECTIVES, SEQUENCE_CLASSIFICATION

    # The spec only (config + tokenizer): reading the weights here too would add a second copy of
    # the model to the peak memory that the LoRA/full comparison reports.
    spec = read_spec(Path(cfg.model_dir), heads=())
    arch = spec.architecture
    objective = OBJECTIVES[cfg.task]
    class_name = f"{arch.hf_class_prefix}{objective.hf_suffix}"
    config = transformers.AutoConfig.from_pretrained(cfg.model_dir)
    if cfg.labels:
        config.num_labels = len(cfg.labels)
        config.id2label = {i: lab for i, lab in enumerate(cfg.labels)}
        config.label2id = {lab: i for i, lab in enumerate(cfg.labels)}
    config.architectures = [class_name]
    if cfg.task == SEQUENCE_CLASSIFICATION:
        config.problem_type = "single_label_classification"
    if cfg.dropout is not None:
        config.hidden_dropout_prob = config.attention_probs_dropout_prob = cfg.dropout
        config.classifier_dropout = cfg.dropout
    transformers.set_seed(cfg.seed)  # the head's random init is the same on every rank and run
    cls = getattr(transformers, class_name)
    model = cls.from_pretrained(cfg.model_dir, config=config)
    tokenizer = transformers.AutoTokenizer.from_pretrained(cfg.model_dir)
    if cfg.method == "freeze":
        apply_freeze(model, arch, spec.num_layers, cfg.unfreeze_top, task=cfg.task)
    elif cfg.method == "lora":
        model = apply_lora(model, arch, cfg)
    return model, tokenizer, arch


def head_modules(arch) -> list[str]:
    """Top-level module names (below the encoder prefix) that hold the classification head:
    RoBERTa ``classifier``; BERT ``pooler`` and ``classifier``."""
    return arch.head_modules(CLASSIFICATION)


def task_head_modules(model) -> list[str]:
    """The modules of a task head beside the encoder (``classifier``, ``qa_outputs``, ``lm_head``,
    ``cls``): the model's children other than its base model, read from the model itself."""
    return [name for name, child in model.named_children()
            if name != model.base_model_prefix and any(True for _ in child.parameters())]


def _savable_head_modules(model) -> list[str]:
    """Head modules LoRA trains in full (``modules_to_save``). A masked-LM head's decoder is the
    word embeddings (tied): it and the module holding it are left out (a copy of the embeddings
    would untie it), the head's transform below is kept."""
    tied = {id(p) for p in model.get_input_embeddings().parameters()}
    out: list[str] = []

    def visit(prefix: str, module) -> None:
        if not any(id(p) in tied for p in module.parameters()):
            out.append(prefix)
            return
        for name, child in module.named_children():
            visit(f"{prefix}.{name}", child)

    for name in task_head_modules(model):
        visit(name, getattr(model, name))
    return out


def apply_freeze(model, arch, num_layers: int, unfreeze_top: int, task: str = "sequence-classification") -> list[str]:
    """Freeze the encoder except its top ``unfreeze_top`` layers; the head stays trainable (a tied
    masked-LM decoder is the word embeddings, which stay frozen).

    Returns:
        The names of the trainable parameters.
    Raises:
        InputError: ``unfreeze_top`` outside 0..num_layers.
    """
    if not 0 <= unfreeze_top <= num_layers:
        raise InputError(f"--unfreeze-top must be in 0..{num_layers} (the model has {num_layers} layers), "
                         f"got {unfreeze_top}")
    top = {f"{arch.prefix}.encoder.layer.{i}." for i in range(num_layers - unfreeze_top, num_layers)}
    if task == "sequence-classification":
        head = arch.head_tensors(CLASSIFICATION)
    else:
        head = {n for n, _ in model.named_parameters() if n.split(".")[0] in task_head_modules(model)}
    trainable = []
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(tuple(top)) or name in head
        if p.requires_grad:
            trainable.append(name)
    return trainable


def apply_lora(model, arch, cfg: TrainConfig):
    """peft LoRA on the named projections; the classification head is trained in full
    (``modules_to_save``)."""
    from peft import LoraConfig, TaskType, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in cfg.lora_targets if t not in names]
    if missing:
        raise InputError(f"--lora-targets {missing[0]!r} names no module of this model "
                         "(RoBERTa/BERT: query, key, value, dense)")
    from .objectives import OBJECTIVES, SEQUENCE_CLASSIFICATION

    objective = OBJECTIVES[cfg.task]
    save = head_modules(arch) if cfg.task == SEQUENCE_CLASSIFICATION else _savable_head_modules(model)
    lc = LoraConfig(task_type=getattr(TaskType, objective.peft_task) if objective.peft_task else None,
                    r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                    target_modules=list(cfg.lora_targets), modules_to_save=save)
    return get_peft_model(model, lc)


def merged_lora(peft_model):
    """A plain model with every adapter merged in: W' = W + (alpha / r) * B @ A."""
    return peft_model.merge_and_unload()


def check_finite(model) -> None:
    """Refuse weights holding NaN or inf: ``classify`` would refuse them later, and nothing of the
    run is worth keeping.

    Raises:
        InputError: naming the first such tensor.
    """
    import torch

    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise InputError(f"training produced non-finite weights ({name} holds NaN or inf): the run diverged; "
                             "lower --lr; nothing was written")


def state_digest(model) -> str:
    """sha256 over every parameter's bytes, in name order (ranks compare their final weights)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def default_max_length(cfg: TrainConfig, model_max: int) -> int:
    """Tokens per text (classification, token classification), per window (question answering,
    384 as the pipeline) or per block (mlm, 128), never more than the model holds."""
    from .objectives import OBJECTIVES

    if cfg.max_length is not None:
        return min(cfg.max_length, model_max)
    return min(model_max, OBJECTIVES[cfg.task].default_length or model_max)


def model_max_length(tokenizer, config, task: str = "sequence-classification", spec=None) -> int:
    """The longest input the model takes: its tokenizer's limit, 512, and its position table (the
    other tasks read the table exactly; classification keeps its historical ``- 2``)."""
    if task == "sequence-classification" or spec is None:
        return min(tokenizer.model_max_length or 512, 512, config.max_position_embeddings - 2)
    return min(tokenizer.model_max_length or 512, 512, spec.max_tokens_per_text)


def train_into(cfg: TrainConfig, out: Path) -> dict[str, Any]:
    """Train and (on rank 0) write the checkpoint, adapter (lora), metrics and curves into ``out``.

    Returns:
        Metrics: the task's held-out figures, train seconds, steps, peak RSS, loss/eval history.
    """
    import torch
    import transformers

    from .objectives import OBJECTIVES, SEQUENCE_CLASSIFICATION

    if cfg.nproc > 1 and not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.nproc))
    objective = OBJECTIVES[cfg.task]
    model, tokenizer, arch = build_model(cfg)
    from ..storage.checkpoint import read_spec

    spec = read_spec(Path(cfg.model_dir), heads=()) if cfg.task != SEQUENCE_CLASSIFICATION else None
    max_len = default_max_length(cfg, model_max_length(tokenizer, model.config, cfg.task, spec))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.batch_size % world:  # finetune() checks it before spawning; a direct caller of train_into too
        raise InputError(f"--batch-size {cfg.batch_size} is not divisible by --nproc {world}")
    callbacks, evaluate, extra = [], None, {}
    if cfg.task == SEQUENCE_CLASSIFICATION:
        train_ds = _Dataset(tokenizer, cfg.train, max_len)
        eval_ds = _Dataset(tokenizer, cfg.eval, max_len) if cfg.eval else None
        collator = transformers.DataCollatorWithPadding(tokenizer)
    else:
        impl = objective.impl()
        train_ds = impl.dataset(tokenizer, cfg.train, cfg, max_len)
        if not train_ds:
            raise InputError(f"{cfg.train.get('source', 'the training data')}: nothing to train on after tokenizing")
        eval_ds = None  # evaluated by the task's own evaluator (below), not the Trainer's loop
        collator = impl.collator(tokenizer, cfg)
        if cfg.eval:
            evaluate = impl.evaluator(tokenizer, cfg.eval, cfg, max_len)
            if hasattr(impl, "masked_eval_batches"):  # mlm: perplexity before any step
                extra[f"{objective.metric}_before"] = evaluate(model)[objective.metric]
                model.train()
        callbacks.append(_EpochCallback(evaluate, collator, train_ds))
        extra.update({"max_length": max_len, "train_features": len(train_ds)})

    def accuracy(pred) -> dict[str, float]:
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    args = transformers.TrainingArguments(
        output_dir=str(out / ".trainer"), per_device_train_batch_size=cfg.batch_size // world,
        per_device_eval_batch_size=64, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        learning_rate=cfg.lr, seed=cfg.seed, data_seed=cfg.seed,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random" if cfg.shuffle else "sequential",
        logging_steps=1, eval_strategy="epoch" if eval_ds is not None else "no", save_strategy="no",
        report_to=[], disable_tqdm=cfg.quiet or _rank() != 0, use_cpu=not torch.cuda.is_available(),
        ddp_backend=None if world == 1 else ("nccl" if torch.cuda.is_available() else "gloo"),
        dataloader_num_workers=0, weight_decay=0.0, warmup_steps=cfg.warmup, lr_scheduler_type="linear",
        remove_unused_columns=False, optim=cfg.optimizer,
        # Off: *ForSequenceClassification takes **kwargs, so the Trainer believes it sums its loss over
        # num_items_in_batch and multiplies it by the process count, but its loss is a plain mean: under
        # DDP every gradient came out N times too large (measured: 2 processes drifted 1e-2 from 1).
        average_tokens_across_devices=False)
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
        data_collator=collator, compute_metrics=accuracy if eval_ds is not None else None, callbacks=callbacks)
    if cfg.quiet:  # the Trainer prints every log dict when its progress bar is off
        trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    if cfg.task == SEQUENCE_CLASSIFICATION:
        final = trainer.evaluate() if eval_ds is not None else {}
    else:
        final = evaluate(trainer.model) if evaluate is not None and _rank() == 0 else {}
    trained = trainer.model
    check_finite(trained)  # a diverged run (too high a learning rate) must not be saved as a model
    digest = state_digest(trained)
    (out / "ranks").mkdir(exist_ok=True)  # every rank's final-weight digest (DDP: all equal)
    (out / "ranks" / f"rank{_rank()}.json").write_text(json.dumps({"rank": _rank(), "sha256": digest}) + "\n")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    history = [h for h in trainer.state.log_history]
    metrics = {"method": cfg.method, "task": cfg.task, "train_seconds": seconds, "steps": trainer.state.global_step,
               "eval_accuracy": final.get("eval_accuracy"), "peak_rss_mb": peak, "world_size": world,
               "trainable_parameters": sum(p.numel() for p in trained.parameters() if p.requires_grad),
               "parameters": sum(p.numel() for p in trained.parameters()), "history": history,
               "lr": cfg.lr, "warmup_steps": args.get_warmup_steps(trainer.state.max_steps)}
    if cfg.task != SEQUENCE_CLASSIFICATION:
        metrics.update(extra)
        metrics.update({k: v for k, v in final.items() if k != "eval_accuracy"})
        if hasattr(collator, "public"):
            metrics["masking"] = collator.public()
    if _rank() == 0:
        if cfg.method == "lora":
            trained.save_pretrained(str(out / ADAPTER_DIR))  # the unmerged adapter, kept beside
            trained = merged_lora(trained)
        for p in trained.parameters():
            p.requires_grad = True
        trained.save_pretrained(str(out), safe_serialization=True)
        tokenizer.save_pretrained(str(out))
        (out / "train_metrics.json").write_text(json.dumps(metrics | {"config": _public(cfg)}, indent=2) + "\n")
    import shutil

    shutil.rmtree(out / ".trainer", ignore_errors=True)
    return metrics


def _examples(data: dict) -> int:
    return len(data["texts"] if "texts" in data else data["questions"])


def _public(cfg: TrainConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["train"] = {"examples": _examples(cfg.train)}
    d["eval"] = {"examples": _examples(cfg.eval)} if cfg.eval else None
    return d


class _EpochCallback:
    """Per epoch: cut the mlm blocks anew and start the collator's record of the epoch (mlm) and, on
    rank 0 with held-out data,
    run the task's evaluator and log its figures (the report's curve reads them)."""

    def __new__(cls, evaluate, collator, dataset):
        import transformers

        class Callback(transformers.TrainerCallback):
            epoch = 0

            def on_epoch_begin(self, args, state, control, **kwargs):
                self.epoch += 1
                if hasattr(dataset, "regroup"):
                    dataset.regroup(self.epoch)
                if hasattr(collator, "start_epoch"):
                    collator.start_epoch()

            def on_epoch_end(self, args, state, control, model=None, **kwargs):
                if evaluate is None or _rank() != 0:
                    return
                figures = evaluate(model)
                model.train()
                state.log_history.append({"epoch": state.epoch, "step": state.global_step} |
                                         {k: v for k, v in figures.items() if isinstance(v, (int, float))})

        return Callback()


def worker_main(argv: list[str] | None = None) -> int:
    """torchrun entry: ``python -m encoderkit.finetune.trainer CONFIG.json OUT``."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    from ..core.errors import EncoderkitError

    cfg_path, out = Path(argv[0]), Path(argv[1])
    d = json.loads(cfg_path.read_text())
    d["lora_targets"] = tuple(d["lora_targets"])
    try:
        train_into(TrainConfig(**d), out)
    except EncoderkitError as e:  # the launcher relays this one line (every rank sees the same)
        if _rank() == 0:
            (out / "ranks").mkdir(exist_ok=True)
            (out / "ranks" / ERROR_FILE).write_text(json.dumps({"error": str(e)}) + "\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(worker_main())
