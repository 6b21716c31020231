"""A copy task as an attnbench plugin: `attnbench run --plugin examples/copy_task.py --suite ...`."""

from typing import ClassVar

import torch
import torch.nn.functional as F

from attnbench.tasks import register_task
from attnbench.tasks.model import DecoderLM, DecoderTask, attention_builder
from attnbench.tasks.training import TRAINING, attention_metrics, train_to_stop


@register_task("copy")
class Copy(DecoderTask):
    """Copy: read n random tokens, then write them again; accuracy on the copy."""

    title = "copy accuracy after training"
    sizes: ClassVar = {"vocab": 16, "seq_len": 16, "d_model": 32, "heads": 2, "layers": 2, "batch": 32}
    params: ClassVar = {**sizes, **TRAINING.defaults, "lr": 3e-3, "max_steps": 300, "eval_every": 50}
    counts = (*sizes, *TRAINING.counts)  # positive integers
    unseeded = TRAINING.unseeded  # when to stop is not what is trained: not in the seed

    @classmethod
    def run(cls, variant, case, p):
        torch.manual_seed(seed := cls.run_seed(case, p))
        make = attention_builder(variant, case, p)
        model = DecoderLM(make, vocab=p["vocab"], d_model=p["d_model"], layers=p["layers"],
                          position="learned", max_len=p["seq_len"]).to(case.device)  # fmt: skip
        half, gen = p["seq_len"] // 2, torch.Generator().manual_seed(seed)

        def loss_and_accuracy(batch: int):
            x = torch.randint(p["vocab"], (batch, half), generator=gen).repeat(1, 2).to(case.device)
            logits = model(x)[:, half - 1 : -1]  # each position of the copy predicts the next token
            loss = F.cross_entropy(logits.reshape(-1, p["vocab"]), x[:, half:].reshape(-1))
            return loss, (logits.argmax(-1) == x[:, half:]).float().mean().item()

        evaluate = lambda: tuple(float(v) for v in loss_and_accuracy(256))
        result = train_to_stop(model, lambda: loss_and_accuracy(p["batch"])[0], evaluate, p)
        return {**result.metrics(), **attention_metrics(model.attention_layers[0])}
