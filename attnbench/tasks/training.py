"""The training loop every task shares: Adam, periodic evaluation, early stopping.

A run stops when the evaluation loss reaches `stop_loss`, when an evaluation's accuracy
reaches `stop_accuracy` (where a task has it: Zoology's rule), when the loss has not improved
for `patience` evaluations, or at `max_steps`. It records the best evaluation loss (with the
accuracy of that evaluation), the last one, and the best accuracy of any evaluation: a task
says which it reports.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from attnbench.registry import Variant


@dataclass(frozen=True)
class TrainingParams:
    """The parameters every task trained with `train_to_stop` has: their defaults, those that
    must be positive integers, and the stopping rule, which says when to stop, not what to
    train, and so is not part of a run's seed."""

    defaults: Mapping[str, Any]
    counts: tuple[str, ...]
    unseeded: tuple[str, ...]


TRAINING = TrainingParams(
    defaults={
        "lr": 1e-3,
        "eval_every": 100,
        "patience": 10,
        "stop_loss": 1e-3,
        "max_steps": 100_000,
        "seed": 0,
    },
    counts=("batch", "eval_every", "patience", "max_steps"),
    unseeded=("eval_every", "patience", "stop_loss", "max_steps"),
)


def attention_metrics(layer: Variant) -> dict[str, Any]:
    """What a task records of the attention layer it trained: its resolved parameters and,
    for a fixed-size memory, d_dot."""
    metrics: dict[str, Any] = {"resolved_params": dict(layer.hparams)}
    d_dot = layer.d_dot()
    if d_dot is not None:
        metrics["d_dot"] = d_dot
    return metrics


@dataclass(frozen=True)
class TrainConfig:
    """The optimiser and the stopping rule, read from a task's resolved parameters (their
    defaults are TRAINING.defaults)."""

    lr: float
    eval_every: int
    patience: int  # evaluations without improvement before stopping
    stop_loss: float  # an evaluation loss at or below this ends the run
    max_steps: int
    warmup: int = 0  # steps of linear learning-rate warm-up
    cosine: bool = False  # then decay the learning rate to 10 % along a cosine to max_steps
    clip: float = 0.0  # clip the gradient norm to this (0: no clipping)
    stop_accuracy: float = 0.0  # an evaluation accuracy at or above this ends the run (0: never)

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> TrainConfig:
        """The schedule and clipping are optional parameters (a task without them trains at a
        constant rate, unclipped)."""
        return cls(
            lr=float(p["lr"]),
            eval_every=int(p["eval_every"]),
            patience=int(p["patience"]),
            stop_loss=float(p["stop_loss"]),
            max_steps=int(p["max_steps"]),
            warmup=int(p.get("warmup", 0)),
            cosine=bool(p.get("cosine", False)),
            clip=float(p.get("clip", 0.0)),
            stop_accuracy=float(p.get("stop_accuracy", 0.0)),
        )

    def lr_factor(self, step: int) -> float:
        """The learning rate at `step` (0-based) as a fraction of `lr`."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        if not self.cosine:
            return 1.0
        progress = (step - self.warmup) / max(1, self.max_steps - self.warmup)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class TrainResult:
    steps: int = 0
    best_loss: float = math.inf
    best_accuracy: float = 0.0
    best_step: int = 0
    max_accuracy: float = 0.0  # the best accuracy of any evaluation
    stopped_by: str = ""  # stop_loss | stop_accuracy | patience | max_steps | diverged
    train_time_s: float = 0.0
    curve: list[dict[str, float]] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "best_loss": self.best_loss,
            "accuracy": self.best_accuracy,
            "best_step": self.best_step,
            "last_loss": self.curve[-1]["eval_loss"] if self.curve else math.nan,
            "last_accuracy": self.curve[-1]["accuracy"] if self.curve else math.nan,
            "max_accuracy": self.max_accuracy,
            "stopped_by": self.stopped_by,
            "train_time_s": round(self.train_time_s, 3),
            "loss_curve": self.curve,
        }


def train(
    model: nn.Module,
    step_loss: Callable[[], torch.Tensor],
    evaluate: Callable[[], tuple[float, float]],
    config: TrainConfig,
) -> TrainResult:
    """`step_loss()` returns the training loss of a fresh batch; `evaluate()` returns the
    evaluation (loss, accuracy) in eval mode. Evaluates every `eval_every` steps. The training
    loss is summed on the device and read at evaluations only: no host sync per step."""
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, config.lr_factor)
    result = TrainResult()
    since_best, running, seen = 0, 0.0, 0
    start = time.perf_counter()
    step = 0
    while step < config.max_steps:
        model.train()
        loss = step_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip:
            nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        opt.step()
        schedule.step()
        step += 1
        running, seen = running + loss.detach().double(), seen + 1  # float64, as a Python sum
        if step % config.eval_every and step < config.max_steps:
            continue
        model.eval()
        with torch.no_grad():
            eval_loss, accuracy = evaluate()
        result.curve.append(
            {"step": step, "train_loss": float(running) / seen, "eval_loss": eval_loss, "accuracy": accuracy}
        )
        running, seen = 0.0, 0
        if not math.isfinite(eval_loss):
            result.stopped_by = "diverged"
            break
        result.max_accuracy = max(result.max_accuracy, accuracy)
        if eval_loss < result.best_loss:
            result.best_loss, result.best_accuracy, result.best_step = eval_loss, accuracy, step
            since_best = 0
        else:
            since_best += 1
        if eval_loss <= config.stop_loss:
            result.stopped_by = "stop_loss"
            break
        if config.stop_accuracy and accuracy >= config.stop_accuracy:
            result.stopped_by = "stop_accuracy"
            break
        if since_best >= config.patience:
            result.stopped_by = "patience"
            break
    else:
        result.stopped_by = "max_steps"
    result.steps = step
    result.train_time_s = time.perf_counter() - start
    return result


def train_to_stop(
    model: nn.Module,
    step_loss: Callable[[], torch.Tensor],
    evaluate: Callable[[], tuple[float, float]],
    params: Mapping[str, Any],
) -> TrainResult:
    """`train` with the optimiser and stopping rule a task's resolved `params` set."""
    return train(model, step_loss, evaluate, TrainConfig.from_params(params))
