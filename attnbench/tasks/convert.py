"""Swap-then-finetune (Kasai et al. 2021, "Finetuning Pretrained Transformers into RNNs").

A softmax LM is trained (or its checkpoint loaded: it is the extrapolation task's model, with
the same cache, so the extrapolation suite's `softmax.sdpa[position=learned]` arm is reused),
then every attention layer is replaced by the case's variant (T2R: φ(x) = relu(W x + b), k
features, W and b per head and layer, shared by queries and keys, attention-normalised; or
ELU+1, FAVOR+, …) keeping every other weight, and the whole model is finetuned for
`finetune_tokens`. Reported: validation perplexity at the training length before the swap,
right after it, after finetuning, and of the same architecture trained from scratch for as
many steps as pretraining and finetuning together; finetuning time and tokens/s.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from attnbench.cases import Case, freeze
from attnbench.registry import REGISTRY, Variant
from attnbench.tasks import register_task
from attnbench.tasks.extrapolation import Extrapolation, ppl_cell
from attnbench.tasks.lm import as_tokens, evaluate
from attnbench.tasks.lm_train import cached_corpus, fit, trained_model
from attnbench.tasks.model import DecoderLM, DecoderTask, attention_builder
from attnbench.tasks.training import attention_metrics

if TYPE_CHECKING:
    import pandas as pd

ATTENTION = ".mix.attention."  # the state-dict keys of the attention variants' own parameters
# the extrapolation task's parameters that shape the source model and its training
SHARED = tuple(k for k in Extrapolation.params if k not in ("position", "eval_factor", "sliding_stride"))


def swap_attention(source: DecoderLM, make_attention) -> DecoderLM:
    """A copy of `source` whose attention layers are new ones from `make_attention()`; every
    other weight (embeddings, positions, projections, MLPs, norms) is copied exactly."""
    target = DecoderLM(
        make_attention,
        vocab=source.embed.num_embeddings,
        d_model=source.embed.embedding_dim,
        layers=len(source.blocks),
        position=source.position,
        max_len=source.max_len,
        scale_embeddings=source.embed_scale != 1.0,
    ).to(source.embed.weight)
    kept = {k: v for k, v in source.state_dict().items() if ATTENTION not in k}
    missing, unexpected = target.load_state_dict(kept, strict=False)
    if unexpected or any(ATTENTION not in k for k in missing):
        raise RuntimeError(f"the swap left weights behind: {unexpected or missing}")
    return target


@register_task("convert")
class Convert(DecoderTask):
    """Swap a trained softmax LM's attention for a linear variant, finetune (T2R)."""

    params: ClassVar[Mapping[str, Any]] = {
        **{k: Extrapolation.params[k] for k in SHARED},
        "train_tokens": 1_500_000,  # pretraining budget of the softmax source
        "source": "softmax.sdpa",
        "position": "learned",  # the LM's input positions (kept through the swap)
        "finetune_tokens": 500_000,
        "finetune_lr": 1e-3,
        "finetune_warmup": 50,
    }
    counts: ClassVar[tuple[str, ...]] = (
        *(k for k in Extrapolation.counts if k in SHARED),
        "finetune_tokens",
    )
    unseeded: ClassVar[tuple[str, ...]] = tuple(k for k in Extrapolation.unseeded if k in SHARED)
    title: ClassVar[str] = "swap-then-finetune: validation perplexity at the training length"

    @classmethod
    def resolve_params(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        p = super().resolve_params(given)
        Extrapolation.resolve_params(cls.lm_params(p))  # the same rules as the LM task's
        REGISTRY.get(p["source"])
        return p

    @staticmethod
    def lm_params(p: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
        """The extrapolation task's parameters for a model of this conversion."""
        return {**{k: p[k] for k in SHARED}, "eval_factor": 1, **changes}

    @classmethod
    def run(cls, variant: type[Variant], case: Case, params: dict[str, Any]) -> dict[str, Any]:
        p = params
        lm = Extrapolation
        corpus = cached_corpus(p["corpus"])
        valid = as_tokens(corpus.valid[: p["eval_tokens"] + 1])

        def ppl(model: DecoderLM) -> float:
            e = evaluate(
                model,
                valid,
                p["seq_len"],
                batch_tokens=p["eval_batch_tokens"],
                device=case.device,
                dtype=case.dtype,
                measure_memory=False,
            )
            return math.exp(e.loss)

        # the source: the extrapolation task's softmax LM with these input positions
        source_task = cls.lm_params(p)
        source_case = dataclasses.replace(
            case,
            variant=p["source"],
            params=freeze({"position": p["position"]}),
            task=freeze({"name": "extrapolation", **source_task}),
        )
        source, pretrain = trained_model(
            lm, REGISTRY.get(p["source"]), source_case, lm.resolve_params(source_task)
        )
        torch.manual_seed(cls.run_seed(case, p))
        target = swap_attention(source, attention_builder(variant, case, p))
        before, after_swap = ppl(source), ppl(target)
        tuned = fit(
            target,
            case,
            lm.resolve_params(
                cls.lm_params(
                    p,
                    train_tokens=p["finetune_tokens"],
                    lr=p["finetune_lr"],
                    warmup=p["finetune_warmup"],
                )
            ),
            corpus,
            cls.run_seed(case, p) + 7,
        )
        # the same architecture from scratch, for pretraining's and finetuning's steps together
        steps = pretrain["steps"] + tuned["steps"]
        scratch_task = cls.lm_params(
            p, train_tokens=steps * p["batch"] * p["seq_len"], position=p["position"]
        )
        scratch_case = dataclasses.replace(case, task=freeze({"name": "extrapolation", **scratch_task}))
        scratch, trained = trained_model(lm, variant, scratch_case, lm.resolve_params(scratch_task))
        return {
            "seq_len": p["seq_len"],
            "source": p["source"],
            "ppl_source": before,
            "ppl_swapped": after_swap,
            "ppl_finetuned": ppl(target),
            "ppl_scratch": ppl(scratch),
            "pretrain_steps": pretrain["steps"],
            "finetune_steps": tuned["steps"],
            "scratch_steps": trained["steps"],
            "finetune_time_s": tuned["train_time_s"],
            "finetune_tokens_per_s": tuned["train_tokens_per_s"],
            "scratch_time_s": trained["train_time_s"],
            "pretrain_checkpoint": pretrain["checkpoint"],
            "finetune_curve": tuned["loss_curve"],
            **attention_metrics(target.attention_layers[0]),
        }

    @classmethod
    def table(cls, df: pd.DataFrame, *, raw: bool = False, **options: Any) -> pd.DataFrame:
        """Rows: the variant swapped in; columns: validation perplexity of the softmax source,
        right after the swap, after finetuning and from scratch (as many steps in all), and
        finetuning's tokens/s."""
        import pandas as pd

        columns = {
            "ppl_source": "softmax source",
            "ppl_swapped": "swapped",
            "ppl_finetuned": "finetuned",
            "ppl_scratch": "from scratch",
            "finetune_tokens_per_s": "finetune tok/s",
        }
        rows = []
        for _, r in df.iterrows():
            row = {"label": r["label"]}
            if r["status"] != "ok":
                row["status"] = r["status"]
            else:
                for key, name in columns.items():
                    text = f"{r[key]:.0f}" if key.endswith("per_s") else ppl_cell(r[key])
                    row[name] = r[key] if raw else text
                row["steps (pretrain + finetune = scratch)"] = (
                    f"{int(r['pretrain_steps'])} + {int(r['finetune_steps'])} = {int(r['scratch_steps'])}"
                )
            rows.append(row)
        return pd.DataFrame(rows).fillna("")
