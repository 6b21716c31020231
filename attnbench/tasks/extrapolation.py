"""Length extrapolation (Press, Smith and Lewis 2021, "Train Short, Test Long") as a task.

A byte-level decoder LM (`DecoderLM`: pre-norm blocks, tied embeddings, vocabulary 256) is
trained on windows of L bytes for a fixed token budget, the same for every arm, then
evaluated on the validation text at L, 2L, 4L, … up to `eval_factor`·L: perplexity, bits per
byte and the loss by position bucket inside the window, in non-overlapping windows and, with
`sliding_stride`, a sliding window too (see `attnbench.tasks.lm`).

Positional schemes: those added to the token embeddings (sinusoidal, learned) are the LM's,
as in the paper; a softmax variant's `position` parameter naming one of them is moved to the
input, and the task's own `position` gives one to any variant. RoPE and score biases (T5,
ALiBi, Shaw) act inside the variant. An evaluation length a scheme or variant cannot reach
(the learned table ends at L) is recorded `unsupported` with the reason; the others still run.

Trained weights are cached by what trained them (`checkpoints`), so adding evaluation
lengths or the sliding mode re-evaluates without retraining.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from attnbench.cases import Case
from attnbench.errors import Unsupported, UserError, is_oom, one_line
from attnbench.measure.memory import peak_bytes
from attnbench.registry import Variant
from attnbench.tasks import register_task
from attnbench.tasks.checkpoints import checkpoint_key, load_checkpoint, save_checkpoint
from attnbench.tasks.corpus import Corpus, load_corpus
from attnbench.tasks.lm import VOCAB, as_tokens, evaluate, precision, sample_batch
from attnbench.tasks.model import INPUT_SCHEMES, DecoderLM, DecoderTask, attention_builder
from attnbench.tasks.training import (
    NOT_SEEDED,
    TRAIN_DEFAULTS,
    TrainConfig,
    attention_metrics,
    run_seed,
    train,
)

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


@register_task("extrapolation")
class Extrapolation(DecoderTask):
    """Train a byte-level LM at length L, evaluate perplexity at L … 16L (ALiBi paper)."""

    params: ClassVar[Mapping[str, Any]] = {
        "corpus": "",  # "" = the running interpreter's standard library; else a path
        "seq_len": 128,
        "d_model": 128,
        "layers": 4,
        "heads": 4,
        "batch": 16,
        "train_tokens": 2_000_000,  # the budget: steps = train_tokens / (batch · seq_len)
        "position": "none",  # an input scheme for any variant: none | sinusoidal | learned
        "eval_factor": 16,  # evaluate at L, 2L, … up to this · L (a power of two)
        "eval_tokens": 65_536,  # validation bytes scored at every length
        "sliding_stride": 0,  # > 0: also evaluate with a sliding window of this stride
        "eval_batch_tokens": 8192,
        "curve_tokens": 16_384,  # validation bytes of the loss curve during training
        "lr": 1e-3,
        "warmup": 100,
        "cosine": True,
        "clip": 1.0,
        "eval_every": 250,
        "seed": TRAIN_DEFAULTS["seed"],
    }
    counts: ClassVar[tuple[str, ...]] = (
        "seq_len",
        "d_model",
        "layers",
        "heads",
        "batch",
        "train_tokens",
        "eval_factor",
        "eval_tokens",
        "eval_batch_tokens",
        "curve_tokens",
        "eval_every",
    )

    @classmethod
    def resolve_params(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        p = super().resolve_params(given)
        name = f"task {cls.name}"
        if p["eval_factor"] & (p["eval_factor"] - 1):
            raise UserError(f"{name}: eval_factor must be a power of two, not {p['eval_factor']}")
        if p["position"] not in INPUT_SCHEMES:
            raise UserError(
                f"{name}: position must be an input scheme ({', '.join(INPUT_SCHEMES)}); RoPE and score "
                f"biases are the variant's `position` parameter, not {p['position']!r}"
            )
        stride = p["sliding_stride"]
        if not isinstance(stride, int) or not 0 <= stride <= p["seq_len"]:
            raise UserError(f"{name}: sliding_stride must be an integer in [0, seq_len], not {stride!r}")
        if not isinstance(p["warmup"], int) or p["warmup"] < 0:
            raise UserError(f"{name}: warmup must be a non-negative integer, not {p['warmup']!r}")
        if not isinstance(p["corpus"], str):
            raise UserError(f"{name}: corpus must be a path (a string), not {p['corpus']!r}")
        return p

    @classmethod
    def run(cls, variant: type[Variant], case: Case, params: dict[str, Any]) -> dict[str, Any]:
        p = params
        corpus = cached_corpus(p["corpus"])
        model, info = cls.trained_model(variant, case, p)
        valid = as_tokens(corpus.valid[: p["eval_tokens"] + 1])
        evals = [
            cls.evaluate_at(model, case, p, valid, length, stride)
            if info["stopped_by"] != "diverged"
            else {
                **eval_point(p, length, stride),
                "status": "diverged",
                "reason": f"training diverged by step {info['steps']}",
            }
            for stride in ([None, p["sliding_stride"]] if p["sliding_stride"] else [None])
            for length in eval_lengths(p["seq_len"], p["eval_factor"])
        ]
        return {
            "seq_len": p["seq_len"],
            "input_position": model.position,
            "corpus": corpus.source,
            "corpus_sha256": corpus.sha256,
            **info,
            "evals": evals,
            **attention_metrics(model.attention_layers[0]),
        }

    @classmethod
    def trained_model(cls, variant: type[Variant], case: Case, p: dict[str, Any]) -> tuple[DecoderLM, dict]:
        """The case's LM, trained for the budget or loaded from the checkpoint cache, and what
        its training recorded (with `checkpoint`: trained | cached, and `checkpoint_key`)."""
        corpus = cached_corpus(p["corpus"])
        input_scheme, variant_params = split_position(variant, case.param_dict, p["position"])
        seed = run_seed(case, p)
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
                "task": {k: v for k, v in p.items() if k not in NOT_SEEDED and k != "corpus"},
                "corpus": corpus.sha256,
                "seed": seed,
            }
        )
        info = load_checkpoint(key, model)
        if info is None:
            info = cls.fit(model, case, p, corpus, seed)
            save_checkpoint(key, model, info)
            info["checkpoint"] = "trained"
        else:
            info["checkpoint"] = "cached"
        return model, {**info, "checkpoint_key": key}

    @classmethod
    def fit(
        cls, model: DecoderLM, case: Case, p: dict[str, Any], corpus: Corpus, seed: int
    ) -> dict[str, Any]:
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

    @classmethod
    def evaluate_at(
        cls,
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
