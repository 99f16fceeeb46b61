"""The training tasks (``finetune --task``): one record each.

A task selects transformers' model class (``hf_suffix`` after the architecture's class prefix),
peft's task type, and a module that reads its data and provides the dataset builder, the collator,
the held-out evaluator and the report section (``encoderkit.finetune.tokens`` / ``qa`` / ``mlm``).
Sequence classification keeps the path it had (``trainer._Dataset``, the Trainer's own
per-epoch accuracy); the others are evaluated by their module after every epoch and at the end.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Objective:
    name: str  # the --task value
    hf_suffix: str  # transformers' class: f"{Architecture.hf_class_prefix}{hf_suffix}"
    peft_task: str | None  # peft.TaskType member (None: a plain PeftModel)
    module: str | None  # the module with read/dataset/collator/evaluator/report_lines (None: classification)
    metric: str  # the headline held-out figure in the metrics ("eval_f1", ...)
    metric_label: str  # how the report and the curve name it
    higher_is_better: bool = True
    # tokens per window (question answering, as the pipeline) or per block (mlm) unless --max-length
    # says; None: the model's longest
    default_length: int | None = None

    def impl(self) -> ModuleType:
        return importlib.import_module(f"encoderkit.finetune.{self.module}")


SEQUENCE_CLASSIFICATION = "sequence-classification"
TOKEN_CLASSIFICATION = "token-classification"
QUESTION_ANSWERING = "question-answering"
MASKED_LM = "mlm"

OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective(SEQUENCE_CLASSIFICATION, "ForSequenceClassification", "SEQ_CLS", None, "eval_accuracy",
              "held-out accuracy"),
    Objective(TOKEN_CLASSIFICATION, "ForTokenClassification", "TOKEN_CLS", "tokens", "eval_f1",
              "held-out entity F1"),
    Objective(QUESTION_ANSWERING, "ForQuestionAnswering", "QUESTION_ANS", "qa", "eval_f1", "held-out F1 (SQuAD)",
              default_length=384),
    Objective(MASKED_LM, "ForMaskedLM", None, "mlm", "eval_perplexity", "held-out perplexity",
              higher_is_better=False, default_length=128),
)}
TASK_NAMES = tuple(OBJECTIVES)
