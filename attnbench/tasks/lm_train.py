"""Training and evaluating the byte-level LM of the language-model tasks (extrapolation,
convert): the budgeted training run, the checkpoint cache keyed by what trained the model,
and one evaluation length that records what it cannot run instead of raising."""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from attnbench.cases import Case
from attnbench.errors import Unsupported, UserError, is_oom, one_line
from attnbench.measure.memory import peak_bytes
from attnbench.registry import Variant
from attnbench.tasks.checkpoints import checkpoint_key, load_or_train
from attnbench.tasks.corpus import Corpus, load_corpus
from attnbench.tasks.lm import VOCAB, as_tokens, evaluate, precision, sample_batch
from attnbench.tasks.model import INPUT_SCHEMES, DecoderLM, attention_builder
from attnbench.tasks.training import TrainConfig, train

if TYPE_CHECKING:
    from attnbench.tasks import Task

CHECKPOINT_VERSION = 2  # bump when the model or the training changes what a key stands for


@functools.cache
def cached_corpus(path: str) -> Corpus:
    return load_corpus(path or None)


def eval_lengths(seq_len: int, factor: int) -> list[int]:
    """L, 2L, 4L, … up to factor·L."""
    return [seq_len << k for k in range(factor.bit_length()) if 1 << k <= factor]


def eval_point(p: Mapping[str, Any], length: int, stride: int | None) -> dict[str, Any]:
    """What identifies one evaluation of a case: its length and mode."""
    return {
        "length": length,
        "factor": length / p["seq_len"],
        "mode": "windows" if stride is None else "sliding",
        "stride": stride,
    }


def split_position(variant: type[Variant], params: Mapping[str, Any], task_position: str):
    """(the LM's input scheme, the variant's parameters): a variant `position` that is an
    input scheme moves to the LM; a task `position` must be one."""
    params = dict(params)
    own = params.get("position", "none") if "position" in variant.params else "none"
    if own in INPUT_SCHEMES and own != "none":
        if task_position != "none":
            raise UserError(
                f"two positional schemes: {variant.name} position={own} and task position={task_position}"
            )
        params["position"] = "none"
        return own, params
    return task_position, params


def trained_model(
    task: type[Task], variant: type[Variant], case: Case, p: dict[str, Any]
) -> tuple[DecoderLM, dict]:
    """The case's LM, trained for the budget or loaded from the checkpoint cache, and what
    its training recorded (with `checkpoint`: trained | cached, and `checkpoint_key`)."""
    corpus = cached_corpus(p["corpus"])
    input_scheme, variant_params = split_position(variant, case.param_dict, p["position"])
    seed = task.run_seed(case, p)
    torch.manual_seed(seed)
    model = DecoderLM(
        attention_builder(variant, case, p, variant_params),
        vocab=VOCAB,
        d_model=p["d_model"],
        layers=p["layers"],
        position=input_scheme,
        max_len=p["seq_len"],
        scale_embeddings=True,
    ).to(case.device, torch.float64 if case.dtype == "float64" else torch.float32)
    key = checkpoint_key(
        {
            "version": CHECKPOINT_VERSION,
            "variant": case.variant,
            "params": case.param_dict,
            "dtype": case.dtype,
            "device": case.device,
            "task": {k: v for k, v in p.items() if k not in task.unseeded and k != "corpus"},
            "corpus": corpus.sha256,
            "seed": seed,
        }
    )
    info = load_or_train(key, model, lambda: fit(model, case, p, corpus, seed))
    return model, {**info, "checkpoint_key": key}


def fit(model: DecoderLM, case: Case, p: dict[str, Any], corpus: Corpus, seed: int) -> dict[str, Any]:
    """Train for the token budget; returns what a checkpoint keeps of the training."""
    train_tokens = as_tokens(corpus.train)
    curve_text = as_tokens(corpus.valid[: p["curve_tokens"] + 1])
    gen = torch.Generator().manual_seed(seed + 1)
    steps = max(1, math.ceil(p["train_tokens"] / (p["batch"] * p["seq_len"])))

    def batch_loss(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with precision(case.device, case.dtype):
            logits = model(inputs.to(case.device))
        return F.cross_entropy(logits.float().reshape(-1, VOCAB), targets.to(case.device).reshape(-1))

    def step_loss() -> torch.Tensor:
        return batch_loss(*sample_batch(train_tokens, p["batch"], p["seq_len"], gen))

    def curve_point() -> tuple[float, float]:
        e = evaluate(
            model, curve_text, p["seq_len"], device=case.device, dtype=case.dtype, measure_memory=False
        )
        return e.loss, e.correct / e.scored

    # one forward and backward on a batch of its own: activations and gradients, above the
    # parameters (the optimiser's state is 2× the parameters on top)
    probe = sample_batch(train_tokens, p["batch"], p["seq_len"], torch.Generator().manual_seed(seed + 3))
    model.train()
    train_peak = peak_bytes(lambda: batch_loss(*probe).backward(), case.device)
    model.zero_grad(set_to_none=True)
    config = TrainConfig(
        lr=float(p["lr"]),
        eval_every=p["eval_every"],
        patience=steps + 1,
        stop_loss=-math.inf,
        max_steps=steps,
        warmup=p["warmup"],
        cosine=bool(p["cosine"]),
        clip=float(p["clip"]),
    )
    result = train(model, step_loss, curve_point, config)
    tokens = result.steps * p["batch"] * p["seq_len"]
    return {
        "steps": result.steps,
        "stopped_by": result.stopped_by,
        "tokens_trained": tokens,
        "train_time_s": round(result.train_time_s, 3),
        "train_tokens_per_s": tokens / result.train_time_s,
        "train_peak_bytes": train_peak,
        "parameters": sum(t.numel() for t in model.parameters()),
        "valid_loss_at_L": result.curve[-1]["eval_loss"] if result.curve else None,
        "loss_curve": result.curve,
    }


def evaluate_at(
    model: DecoderLM,
    case: Case,
    p: dict[str, Any],
    valid: torch.Tensor,
    length: int,
    stride: int | None,
) -> dict[str, Any]:
    """One evaluation length and mode; what it cannot run is recorded, not raised."""
    what = eval_point(p, length, stride)
    try:
        model.check(length)
        for layer in model.attention_layers:
            layer.check(dataclasses.replace(case, seq_len=length, batch=1))
        start = time.perf_counter()
        e = evaluate(
            model,
            valid,
            length,
            stride=stride,
            batch_tokens=p["eval_batch_tokens"],
            device=case.device,
            dtype=case.dtype,
        )
        return {
            **what,
            **e.metrics(bucket=max(1, p["seq_len"] // 4)),
            "wall_s": round(time.perf_counter() - start, 3),
        }
    except Unsupported as err:
        return {**what, "status": "unsupported", "reason": str(err)}
    except Exception as err:  # one length failing keeps the others' numbers
        if not is_oom(err):
            raise
        if case.device == "cuda":
            torch.cuda.empty_cache()
        return {**what, "status": "oom", "reason": one_line(err)}
