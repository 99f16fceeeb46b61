"""Shared fixtures: random checkpoints built once per test worker (seconds, no network)."""
from __future__ import annotations

import pytest

from encoderkit.storage.random_init import init_random


def _ckpt(tmp_path_factory, name, size, arch="roberta", seed=0):
    out = tmp_path_factory.mktemp("ckpt") / name
    init_random(out, size, seed=seed, arch=arch)
    return out


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory):
    return _ckpt(tmp_path_factory, "tiny-roberta", "tiny")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return _ckpt(tmp_path_factory, "tiny-bert", "tiny", arch="bert")


@pytest.fixture(scope="session")
def small_roberta(tmp_path_factory):
    return _ckpt(tmp_path_factory, "small-roberta", "small", seed=1)


@pytest.fixture(scope="session")
def small_bert(tmp_path_factory):
    return _ckpt(tmp_path_factory, "small-bert", "small", arch="bert", seed=1)


@pytest.fixture(scope="session")
def tiny_mlm(tmp_path_factory):
    """A tiny RoBERTa masked LM trained from scratch on the shipped baking corpus (about two minutes
    on one core, once per session): peaked predictions, top-1 above the most-frequent token on
    held-out text. For tests that need a *trained* fill-mask model (quantized agreement, ...)."""
    pytest.importorskip("accelerate")
    from encoderkit.finetune.mlm import train_tiny_mlm

    out = tmp_path_factory.mktemp("tiny-mlm") / "model"
    train_tiny_mlm(out)
    return out
