"""Byte-level language modelling: training batches, and evaluation at any length.

Text is bytes, so the vocabulary is 256 and nothing is downloaded. A model trained on
windows of L bytes is evaluated on the validation text cut into windows of any length W:

- non-overlapping: windows start at 0, W, 2W, …; every prediction is scored once, the first
  ones of each window with little context (the paper's main mode);
- sliding, with stride s: each window ends s predictions after the previous one and scores
  only those last s (the first scores all it holds), so every prediction but the first
  window's sees at least W − s bytes of context (Press et al. 2021, Sec. 4 and App. B).

Both score every byte after the first exactly once, so their perplexities are comparable; on a
text shorter than the window they are the same computation.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attnbench.measure.memory import peak_bytes

VOCAB = 256


def as_tokens(text: bytes) -> torch.Tensor:
    """Bytes -> a (len,) uint8 tensor of token ids (gathered windows are made int64)."""
    return torch.frombuffer(bytearray(text), dtype=torch.uint8)


def sample_batch(
    tokens: torch.Tensor, batch: int, length: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` windows of `length` inputs at random offsets, with their next-byte targets."""
    if tokens.numel() < length + 1:
        raise ValueError(f"a text of {tokens.numel()} bytes holds no window of {length} + 1")
    start = torch.randint(tokens.numel() - length, (batch,), generator=gen)
    rows = start[:, None] + torch.arange(length + 1)
    chunk = tokens[rows].long()
    return chunk[:, :-1], chunk[:, 1:]


@dataclass(frozen=True)
class Window:
    start: int  # first input position in the text
    width: int  # inputs (= predictions) in the window
    score_from: int  # the first prediction of the window that is scored


def windows(n_tokens: int, length: int, stride: int | None = None) -> list[Window]:
    """The windows that score each of the text's n_tokens − 1 predictions once: non-overlapping
    (`stride` None) or sliding by `stride` predictions."""
    predictions = n_tokens - 1
    if predictions < 1:
        return []
    if stride is None:
        return [Window(s, min(length, predictions - s), 0) for s in range(0, predictions, length)]
    if not 1 <= stride <= length:
        raise ValueError(f"the stride must be in [1, {length}], not {stride}")
    out = [Window(0, min(length, predictions), 0)]
    end = out[0].width  # predictions scored so far
    while end < predictions:
        new_end = min(end + stride, predictions)
        start = max(0, new_end - length)
        out.append(Window(start, new_end - start, end - start))
        end = new_end
    return out


def precision(device: str, dtype: str):
    """bf16/fp16 autocast around the model when the case asks for it (parameters stay fp32)."""
    if dtype in ("bfloat16", "float16"):
        return torch.autocast(device_type=device, dtype=getattr(torch, dtype))
    return contextlib.nullcontext()


@dataclass
class Evaluation:
    length: int
    mode: str  # "windows" (non-overlapping) | "sliding"
    stride: int | None
    loss_sum: float = 0.0
    scored: int = 0
    correct: int = 0  # scored predictions whose most likely byte was the next byte
    position_loss: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    position_count: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    time_s: float = 0.0
    peak_bytes: int | None = None

    @property
    def loss(self) -> float:
        """Mean negative log-likelihood per byte, nats."""
        return self.loss_sum / self.scored if self.scored else math.nan

    def buckets(self, width: int) -> list[float | None]:
        """Mean loss of the scored predictions in each run of `width` window positions."""
        out: list[float | None] = []
        for lo in range(0, self.length, width):
            count = float(self.position_count[lo : lo + width].sum())
            out.append(float(self.position_loss[lo : lo + width].sum()) / count if count else None)
        return out

    def metrics(self, bucket: int) -> dict[str, Any]:
        loss = self.loss
        return {
            "length": self.length,
            "mode": self.mode,
            "stride": self.stride,
            "status": "ok",
            "loss": loss,
            "ppl": math.exp(loss) if loss < 700 else math.inf,
            "bpb": loss / math.log(2),
            "scored": self.scored,
            "accuracy": self.correct / self.scored if self.scored else None,
            "bucket": bucket,
            "bucket_loss": self.buckets(bucket),
            "time_s": round(self.time_s, 4),
            "tokens_per_s": self.scored / self.time_s if self.time_s else None,
            "peak_bytes": self.peak_bytes,
        }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    tokens: torch.Tensor,
    length: int,
    *,
    stride: int | None = None,
    batch_tokens: int = 8192,
    device: str = "cpu",
    dtype: str = "float32",
    measure_memory: bool = True,
) -> Evaluation:
    """Score `tokens` (a 1-D tensor of byte ids) with windows of `length`; `model(inputs)`
    returns logits. Windows are batched by width, about `batch_tokens` inputs per batch."""
    model.eval()
    result = Evaluation(length, "windows" if stride is None else "sliding", stride)
    result.position_loss = torch.zeros(length, dtype=torch.float64)
    result.position_count = torch.zeros(length, dtype=torch.float64)
    per_batch = max(1, batch_tokens // length)
    groups: dict[int, list[Window]] = {}
    for w in windows(tokens.numel(), length, stride):
        groups.setdefault(w.width, []).append(w)
    batches = [ws[i : i + per_batch] for ws in groups.values() for i in range(0, len(ws), per_batch)]
    if measure_memory and batches:
        inputs, _, _ = _gather(tokens, batches[0], device)
        with precision(device, dtype):
            result.peak_bytes = peak_bytes(lambda: model(inputs), device)
    start = time.perf_counter()
    for group in batches:
        inputs, targets, scored = _gather(tokens, group, device)
        with precision(device, dtype):
            logits = model(inputs)
        nll = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none").double()
        nll = (nll * scored).cpu()
        result.correct += int(((logits.argmax(-1) == targets) * scored).sum())
        result.position_loss[: nll.shape[1]] += nll.sum(0)
        result.position_count[: nll.shape[1]] += scored.sum(0).cpu()
    if device == "cuda":
        torch.cuda.synchronize()
    result.time_s = time.perf_counter() - start
    result.loss_sum = float(result.position_loss.sum())
    result.scored = int(result.position_count.sum())
    return result


def _gather(
    tokens: torch.Tensor, group: list[Window], device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs and targets (B, width) of windows of one width, and the mask of scored ones."""
    width = group[0].width
    start = torch.tensor([w.start for w in group])
    rows = tokens[start[:, None] + torch.arange(width + 1)].long()
    score_from = torch.tensor([w.score_from for w in group])
    scored = (torch.arange(width)[None, :] >= score_from[:, None]).double()
    return rows[:, :-1].to(device), rows[:, 1:].to(device), scored.to(device)
