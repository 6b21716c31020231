"""Length extrapolation: the byte LM, its evaluation windows, the task's protocol and cache."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnbench.cases import Case, freeze
from attnbench.errors import UserError
from attnbench.registry import REGISTRY
from attnbench.tasks import get_task
from attnbench.tasks.checkpoints import checkpoint_path
from attnbench.tasks.lm import VOCAB, as_tokens, evaluate, sample_batch, windows
from attnbench.tasks.lm_train import eval_lengths, split_position
from attnbench.tasks.model import DecoderLM

TINY = dict(d_model=32, layers=1, heads=2, batch=8, eval_every=50, curve_tokens=256, warmup=10)


@pytest.fixture
def text_file(tmp_path):
    """A repetitive text: a few sentences cycled, so a tiny model can learn it in seconds."""
    sentences = [b"the cat sat on the mat. ", b"a dog ran in the fog. ", b"we sing a long song. "]
    path = tmp_path / "text.txt"
    path.write_bytes(b"".join(sentences[i % 3] for i in range(600)))
    return path


def tiny_model(position: str = "none", max_len: int = 16, seed: int = 0) -> DecoderLM:
    torch.manual_seed(seed)
    make = lambda: REGISTRY.get("softmax.sdpa")(heads=2, d_head=8)
    return DecoderLM(make, vocab=VOCAB, d_model=16, layers=1, position=position, max_len=max_len).eval()


def run_task(task: dict, variant: str = "softmax.sdpa", params: dict | None = None) -> dict:
    t = get_task("extrapolation")
    p = t.resolve_params(task)
    case = Case(
        variant,
        freeze(params or {}),
        causal=True,
        mode="fwd+bwd",
        threads=torch.get_num_threads(),
        task=freeze({"name": "extrapolation", **task}),
        **t.shape(task),
    )
    return t.run(REGISTRY.get(variant), case, p)


# --- windows and evaluation -------------------------------------------------------------------
@pytest.mark.parametrize("n, length, stride", [(50, 8, None), (50, 8, 3), (50, 8, 8), (9, 8, 2), (5, 8, 1)])
def test_every_prediction_is_scored_exactly_once(n, length, stride):
    scored = []
    for w in windows(n, length, stride):
        assert 1 <= w.width <= length and w.start + w.width <= n - 1
        scored += [w.start + i + 1 for i in range(w.score_from, w.width)]  # target indices
    assert sorted(scored) == list(range(1, n))


def test_sliding_windows_give_each_later_prediction_a_long_context():
    length, stride = 16, 4
    for w in windows(200, length, stride)[1:]:
        assert w.width == length and w.score_from >= length - stride  # context ≥ W − s


@torch.no_grad()
def brute_force_loss(model, tokens: torch.Tensor, length: int, stride: int | None) -> float:
    """Each prediction scored alone: the model run on exactly its window's inputs up to it."""
    total, count = 0.0, 0
    for w in windows(tokens.numel(), length, stride):
        for i in range(w.score_from, w.width):
            inputs = tokens[w.start : w.start + i + 1].long()[None]
            logits = model(inputs)[0, -1].double()
            total -= float(F.log_softmax(logits, -1)[int(tokens[w.start + i + 1])])
            count += 1
    return total / count


@pytest.mark.parametrize("stride", [None, 3])
def test_evaluation_matches_scoring_each_prediction_alone(stride):
    model = tiny_model(position="sinusoidal")
    tokens = as_tokens(bytes(range(40, 90)))
    e = evaluate(model, tokens, 12, stride=stride, batch_tokens=24, measure_memory=False)
    assert e.scored == tokens.numel() - 1
    assert e.loss == pytest.approx(brute_force_loss(model, tokens, 12, stride), rel=1e-5)
    buckets = e.buckets(4)
    weights = [float(e.position_count[i : i + 4].sum()) for i in range(0, 12, 4)]
    assert sum(b * w for b, w in zip(buckets, weights, strict=True)) / sum(weights) == pytest.approx(e.loss)


def test_sliding_and_windows_agree_on_a_text_shorter_than_the_window():
    model = tiny_model(position="sinusoidal", max_len=64)
    tokens = as_tokens(b"short text, shorter than a window")
    a = evaluate(model, tokens, 64, measure_memory=False)
    b = evaluate(model, tokens, 64, stride=5, measure_memory=False)
    assert a.scored == b.scored == tokens.numel() - 1
    assert a.loss == b.loss and a.loss > 0


def test_training_batches_are_windows_of_the_text_and_their_next_bytes():
    tokens = as_tokens(bytes(range(256)) * 2)
    x, y = sample_batch(tokens, 4, 10, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 10)
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal((x + 1) % 256, y)


def test_learned_positions_end_at_their_table():
    from attnbench.errors import Unsupported

    model = tiny_model(position="learned", max_len=16)
    model(torch.zeros(1, 16, dtype=torch.long))
    with pytest.raises(Unsupported, match="learned positions end at 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


# --- the task ---------------------------------------------------------------------------------
def test_eval_lengths_double_up_to_the_factor():
    assert eval_lengths(128, 16) == [128, 256, 512, 1024, 2048]
    assert eval_lengths(64, 1) == [64]


def test_input_schemes_move_from_the_variant_to_the_model():
    softmax = REGISTRY.get("softmax.sdpa")
    assert split_position(softmax, {"position": "sinusoidal"}, "none") == ("sinusoidal", {"position": "none"})
    assert split_position(softmax, {"position": "alibi"}, "none") == ("none", {"position": "alibi"})
    assert split_position(REGISTRY.get("linear.elu"), {}, "learned") == ("learned", {})
    with pytest.raises(UserError, match="two positional schemes"):
        split_position(softmax, {"position": "learned"}, "sinusoidal")


@pytest.mark.parametrize(
    "given, message",
    [
        ({"eval_factor": 3}, "power of two"),
        ({"position": "rope"}, "variant's `position`"),
        ({"sliding_stride": 300}, "sliding_stride"),
        ({"heads": 3}, "not divisible"),
        ({"steps": 3}, "no parameter 'steps'"),
    ],
)
def test_task_parameter_mistakes_are_user_errors(given, message):
    with pytest.raises(UserError, match=message):
        get_task("extrapolation").resolve_params(given)


def test_a_tiny_lm_learns_a_repetitive_text(text_file, monkeypatch):
    # the run's seed hashes the task's parameters, the corpus path among them: a path that is
    # the same in every session (not pytest's numbered tmp_path) keeps the run, and the test, fixed
    monkeypatch.chdir(text_file.parent)
    row = run_task(
        {
            **TINY,
            "corpus": text_file.name,
            "seq_len": 32,
            "train_tokens": 300 * 8 * 32,
            "lr": 1e-2,
            "eval_factor": 1,
            "eval_tokens": 512,
        },
        params={"position": "alibi"},
    )
    assert row["steps"] == 300 and row["stopped_by"] == "max_steps"
    first, last = row["loss_curve"][0]["eval_loss"], row["loss_curve"][-1]["eval_loss"]
    assert last < 0.2 and last < first / 3, (first, last)  # chance is ln 256 = 5.5 nats
    (e,) = row["evals"]
    assert e["status"] == "ok" and e["ppl"] < 1.25 and e["bpb"] == pytest.approx(e["loss"] / math.log(2))
    assert row["train_tokens_per_s"] > 0 and row["train_peak_bytes"] > 0 and e["peak_bytes"] > 0


def test_learned_positions_at_twice_the_training_length_are_unsupported(text_file):
    row = run_task(
        {
            **TINY,
            "corpus": str(text_file),
            "seq_len": 16,
            "train_tokens": 2048,
            "eval_factor": 4,
            "eval_tokens": 256,
        },
        params={"position": "learned"},
    )
    assert row["input_position"] == "learned"
    status = {e["length"]: e["status"] for e in row["evals"]}
    assert status == {16: "ok", 32: "unsupported", 64: "unsupported"}
    assert "learned positions end at 16" in row["evals"][1]["reason"]


def test_same_seed_same_perplexity_and_the_checkpoint_is_reused(text_file, tmp_path, monkeypatch):
    task = {
        **TINY,
        "corpus": str(text_file),
        "seq_len": 16,
        "train_tokens": 4096,
        "eval_factor": 2,
        "eval_tokens": 256,
        "sliding_stride": 4,
    }
    monkeypatch.setenv("ATTNBENCH_CACHE_DIR", str(tmp_path / "one"))
    first = run_task(task, params={"position": "alibi"})
    monkeypatch.setenv("ATTNBENCH_CACHE_DIR", str(tmp_path / "two"))
    second = run_task(task, params={"position": "alibi"})  # trained again, from scratch
    assert first["checkpoint"] == second["checkpoint"] == "trained"
    assert [e["ppl"] for e in first["evals"]] == [e["ppl"] for e in second["evals"]]
    assert [(e["mode"], e["length"]) for e in first["evals"]] == [
        ("windows", 16),
        ("windows", 32),
        ("sliding", 16),
        ("sliding", 32),
    ]
    assert checkpoint_path(second["checkpoint_key"]).is_file()
    more = run_task({**task, "eval_factor": 4}, params={"position": "alibi"})  # new lengths: no retraining
    assert more["checkpoint"] == "cached" and more["checkpoint_key"] == second["checkpoint_key"]
    assert more["evals"][1]["ppl"] == second["evals"][1]["ppl"] and len(more["evals"]) == 6
    assert more["train_time_s"] == second["train_time_s"]  # the training recorded with the checkpoint
    other = run_task({**task, "seed": 1}, params={"position": "alibi"})
    assert other["checkpoint"] == "trained" and other["evals"][0]["ppl"] != second["evals"][0]["ppl"]


def test_recurrent_and_windowed_variants_train_too(text_file):
    task = {
        **TINY,
        "corpus": str(text_file),
        "seq_len": 16,
        "train_tokens": 1024,
        "eval_factor": 2,
        "eval_tokens": 128,
    }
    delta = run_task(task, "linear.elu", {"rule": "delta", "norm": "sum"})
    local = run_task(task, "sparse.local", {"window": 8})
    for row in (delta, local):
        assert [e["status"] for e in row["evals"]] == ["ok", "ok"]
        assert all(math.isfinite(e["ppl"]) for e in row["evals"])
    assert delta["d_dot"] == 16


@pytest.mark.gpu
def test_bf16_autocast_training_on_gpu(text_file):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    task = {
        **TINY,
        "corpus": str(text_file),
        "seq_len": 32,
        "train_tokens": 100 * 8 * 32,
        "lr": 3e-3,
        "eval_factor": 2,
        "eval_tokens": 512,
    }
    t = get_task("extrapolation")
    case = Case(
        "softmax.sdpa",
        freeze({"position": "alibi"}),
        causal=True,
        mode="fwd+bwd",
        dtype="bfloat16",
        device="cuda",
        task=freeze({"name": "extrapolation", **task}),
        **t.shape(task),
    )
    row = t.run(REGISTRY.get("softmax.sdpa"), case, t.resolve_params(task))
    assert row["loss_curve"][-1]["eval_loss"] < row["loss_curve"][0]["eval_loss"]
    assert all(e["status"] == "ok" and e["peak_bytes"] > 0 for e in row["evals"])


def test_run_then_show_pivots_arm_by_evaluation_length(tmp_path, text_file, capsys, drawn):
    from attnbench.cli import main
    from attnbench.results import load_results

    suite = tmp_path / "x.toml"
    suite.write_text(
        f"""
[suite]
description = "tiny extrapolation"
[task]
name = "extrapolation"
corpus = "{text_file}"
seq_len = 16
d_model = 32
layers = 1
heads = 2
batch = 8
train_tokens = 1024
eval_factor = 4
eval_tokens = 256
eval_every = 4
[sweep]
variants = ["softmax.sdpa", "lowrank.linformer"]
threads = [1]
[params."softmax.sdpa"]
position = ["learned", "alibi"]
"""
    )
    out = tmp_path / "x.jsonl"
    assert main(["run", "--suite", str(suite), "-o", str(out), "--executor", "inline"]) == 0
    df = load_results(out)
    assert dict(zip(df["label"], df["status"], strict=True)) == {
        "softmax.sdpa[position=learned]": "ok",
        "softmax.sdpa[position=alibi]": "ok",
        "lowrank.linformer": "unsupported",  # non-causal: cannot be a decoder's attention
    }
    capsys.readouterr()
    plot = tmp_path / "x.png"
    assert main(["show", str(out), "--format", "md", "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| softmax")}
    assert "16 (1×)" in text and "64 (4×)" in text and "4× / 1×" in text
    assert lines["softmax.sdpa[position=learned]"].count("unsupported") == 2
    assert "unsupported" not in lines["softmax.sdpa[position=alibi]"]
    (fig,) = drawn
    (panel,) = fig["panels"]
    assert panel["ylabel"] == "validation perplexity (per byte)" and panel["xscale"] == "log"
    assert panel["legend"][:2] == ["softmax.sdpa[position=learned]", "softmax.sdpa[position=alibi]"]
    assert "training length 16" in panel["legend"]
    hashes = df["corpus_sha256"].dropna()
    assert len(hashes) == 2 and hashes.nunique() == 1 and len(hashes.iloc[0]) == 64


def test_a_diverged_training_is_recorded_at_every_length(text_file):
    task = {
        **TINY,
        "corpus": str(text_file),
        "seq_len": 16,
        "train_tokens": 50 * 8 * 16,
        "lr": 1e6,
        "clip": 0.0,
        "warmup": 0,
        "eval_every": 10,
        "eval_factor": 2,
        "eval_tokens": 128,
    }
    row = run_task(task, "linear.elu", {"rule": "delta", "norm": "attn"})
    assert row["stopped_by"] == "diverged" and row["steps"] == 10
    assert [(e["length"], e["status"]) for e in row["evals"]] == [(16, "diverged"), (32, "diverged")]
    assert "diverged by step 10" in row["evals"][0]["reason"]


def test_the_first_model_built_in_a_fresh_process_is_initialised_like_the_next(tmp_path):
    """Nothing a case runs before its seeded initialisation (the SDPA backend probe on first
    use) may draw from the global generator: a rerun would then start from other weights."""
    import subprocess
    import sys

    script = """
import torch
from attnbench.cases import Case
from attnbench.registry import REGISTRY
from attnbench.tasks.model import DecoderLM
sums = []
for _ in range(2):
    torch.manual_seed(0)
    def make():
        layer = REGISTRY.get("softmax.sdpa")(heads=2, d_head=8, position="alibi")
        layer.check(Case("softmax.sdpa", (("position", "alibi"),), 2, 2, 16, 8, causal=True, mode="fwd+bwd"))
        return layer
    model = DecoderLM(make, vocab=256, d_model=16, layers=2)
    sums.append(sum(float(p.double().sum()) for p in model.parameters()))
print(sums[0] == sums[1], sums)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.startswith("True"), out


def test_eval_rows_name_the_sliding_stride():
    import pandas as pd

    from attnbench.tasks.extrapolation import eval_rows

    point = {"length": 16, "factor": 1.0, "status": "ok", "ppl": 2.0, "bucket_loss": [0.7]}
    evals = [{**point, "mode": m, "stride": s} for m, s in (("windows", None), ("sliding", 4))]
    df = pd.DataFrame([{"case_id": "a", "label": "x", "status": "ok", "task.seq_len": 16, "evals": evals}])
    rows = eval_rows(df)
    assert list(rows["mode"]) == ["windows", "sliding (stride 4)"] and "bucket_loss" not in rows


def test_several_seeds_show_the_median_and_range_and_a_seed_that_diverged():
    """Cells: the median (min–max) over the seeds that ran, then how many ended otherwise; the
    ratio column is taken per seed. One seed (every file before seeds) shows as before."""
    import pandas as pd

    def case(seed: int, ppl: tuple[float, float] | None) -> dict:
        if ppl is None:
            evals = [
                {"length": n, "factor": n / 16, "mode": "windows", "status": "diverged"} for n in (16, 32)
            ]
        else:
            evals = [
                {"length": n, "factor": n / 16, "mode": "windows", "stride": None, "status": "ok", "ppl": p}
                for n, p in zip((16, 32), ppl, strict=True)
            ]
        return {"case_id": str(seed), "label": "x", "status": "ok", "task.seq_len": 16, "task.seed": seed,
                "evals": evals}  # fmt: skip

    runs = [case(0, (4.0, 8.0)), case(1, (5.0, 5.0)), case(2, (6.0, 9.0)), case(3, None)]
    table = get_task("extrapolation").table(pd.DataFrame(runs)).iloc[0]
    assert table["16 (1×)"] == "5.00 (4.00–6.00) [1 diverged]"
    assert table["32 (2×)"] == "8.00 (5.00–9.00) [1 diverged]"
    assert table["2× / 1×"] == "1.50 (1.00–2.00)"
    one = get_task("extrapolation").table(pd.DataFrame([runs[0]]).drop(columns="task.seed")).iloc[0]
    assert one["16 (1×)"] == "4.00" and one["2× / 1×"] == "2.00"


def test_two_workers_wanting_the_same_model_at_once_train_it_once(tmp_path, monkeypatch):
    import threading

    from attnbench.tasks import checkpoints

    monkeypatch.setenv("ATTNBENCH_CACHE_DIR", str(tmp_path))
    real_load, trainings, missed = checkpoints.load_checkpoint, [], threading.Event()
    trained = threading.Event()

    def load(key, model):  # notes when the second worker has found no checkpoint
        info = real_load(key, model)
        if info is None and threading.current_thread().name == "second":
            missed.set()
        return info

    monkeypatch.setattr(checkpoints, "load_checkpoint", load)
    models = {name: torch.nn.Linear(2, 2) for name in ("first", "second")}
    infos = {}

    def worker(name: str) -> None:
        def train() -> dict:
            trainings.append(name)
            trained.set()
            missed.wait(60)  # the other arrives while this one trains
            with torch.no_grad():
                models[name].weight.fill_(3.0)
            return {"steps": 7}

        infos[name] = checkpoints.load_or_train("key", models[name], train)

    first = threading.Thread(target=worker, args=("first",), name="first")
    first.start()
    assert trained.wait(60)
    second = threading.Thread(target=worker, args=("second",), name="second")
    second.start()
    first.join(60)
    second.join(60)
    assert trainings == ["first"]
    assert infos == {
        "first": {"steps": 7, "checkpoint": "trained"},
        "second": {"steps": 7, "checkpoint": "cached"},
    }
    assert torch.equal(models["second"].weight, torch.full((2, 2), 3.0))
