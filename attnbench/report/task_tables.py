"""Tables of task results: the retrieval capacity table (variant × S, best loss, capacity next
to d_dot), the MQAR table (variant × (L, D), accuracy, best over learning rates) and the
extrapolation table (arm × evaluation length, perplexity) and the decode table (variant ×
output length, time per token and state bytes, with the crossover against softmax)."""

from __future__ import annotations

import math

import pandas as pd

from attnbench.errors import UserError
from attnbench.report.table import hide_unsupported

CAPACITY_THRESHOLD = 0.01


def task_name(df: pd.DataFrame) -> str | None:
    """The task the results come from, or None for benchmark results (one task per table)."""
    if "task.name" not in df:
        return None
    names = sorted(df["task.name"].dropna().unique())
    if len(names) > 1:
        raise UserError(
            f"these results mix tasks ({', '.join(names)}): show one at a time (--where task.name=…)"
        )
    return names[0] if names else None


def task_column(df: pd.DataFrame) -> pd.Series:
    """Each row's task name, None for benchmark rows (aligned with `df`)."""
    if "task.name" in df:
        return df["task.name"].where(df["task.name"].notna(), None)
    return pd.Series([None] * len(df), index=df.index, dtype=object)


def _row_keys(df: pd.DataFrame, candidates: list[str]) -> list[str]:
    return ["label"] + [c for c in candidates if c in df and df[c].nunique(dropna=False) > 1]


def d_dot_of(group: pd.DataFrame) -> int | None:
    """The d_dot a variant's results record (one per variant), or None (no fixed-size memory)."""
    d_dot = group["d_dot"].dropna() if "d_dot" in group else ()
    return int(d_dot.iloc[0]) if len(d_dot) else None


def capacity(losses: dict[int, float], threshold: float) -> int | None:
    """The largest S up to which the best loss stays under `threshold`: every swept S up to
    it is retrieved (a case that did not run is not). None if the smallest S already fails.
    A success past a failure (training noise near the limit) does not extend it."""
    held = None
    for s in sorted(losses):
        if not losses[s] < threshold:  # NaN compares False
            break
        held = s
    return held


def crossing(losses: dict[int, float], threshold: float) -> float | None:
    """Where the loss curve first crosses `threshold`: log-loss interpolated linearly in S
    between the capacity and the next swept S, so two variants that hold the same grid point
    still order by how close they came. None without a crossing."""
    cap = capacity(losses, threshold)
    later = sorted(s for s in losses if cap is not None and s > cap and not math.isnan(losses[s]))
    if cap is None or not later:
        return None
    s0, s1 = cap, later[0]
    y0, y1, y = math.log(losses[s0]), math.log(losses[s1]), math.log(threshold)
    return s0 + (s1 - s0) * (y - y0) / (y1 - y0)


def capacity_table(
    df: pd.DataFrame, threshold: float = CAPACITY_THRESHOLD, *, raw: bool = False
) -> pd.DataFrame:
    """Rows: variant (and setting, d_key, device when they vary); columns: d_dot, capacity,
    the interpolated crossing, then S=… holding the best evaluation loss (or the status when
    the case did not run)."""
    keys = _row_keys(df, ["task.setting", "task.d_key", "device", "dtype"])
    rows = []
    for key, group in df.groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key, strict=True))
        row["d_dot"] = d_dot_of(group)
        if row["d_dot"] is None and not raw:  # no fixed-size memory (a softmax KV cache), or never ran
            row["d_dot"] = "unbounded" if (group["status"] == "ok").any() else "—"
        losses = {}
        for _, r in group.sort_values("task.S").iterrows():
            s = int(r["task.S"])
            ok = r["status"] == "ok" and not pd.isna(r.get("best_loss"))
            losses[s] = float(r["best_loss"]) if ok else math.nan
            row[f"S={s}"] = (r["best_loss"] if raw else f"{r['best_loss']:.3g}") if ok else r["status"]
        cap = capacity(losses, threshold)
        smallest = min(losses)
        row[f"capacity (loss<{threshold:g})"] = (
            cap if raw else (str(cap) if cap is not None else f"<{smallest}")
        )
        cross = crossing(losses, threshold)
        row["crossing S"] = cross if raw else ("" if cross is None else f"{cross:.1f}")
        rows.append(row)
    table = pd.DataFrame(rows)
    s_cols = sorted((c for c in table.columns if c.startswith("S=")), key=lambda c: int(c[2:]))
    fixed = [c for c in table.columns if not c.startswith("S=")]
    return table[fixed + s_cols].fillna("").rename(columns=lambda c: c.removeprefix("task."))


def mqar_table(df: pd.DataFrame, *, raw: bool = False) -> pd.DataFrame:
    """Rows: variant (and d_model when it varies); columns: L=…,D=… holding the held-out query
    accuracy, the best over the swept learning rates (the Zoology protocol)."""
    keys = _row_keys(df, ["task.d_model", "device", "dtype"])
    cells = {}
    for key, group in df.groupby([*keys, "task.seq_len", "task.pairs"], dropna=False, sort=True):
        ok = group[group["status"] == "ok"]
        if len(ok):
            best = ok.loc[ok["accuracy"].idxmax()]
            cell = best["accuracy"] if raw else f"{best['accuracy']:.3f} (lr {best['task.lr']:g})"
        else:
            cell = group["status"].iloc[0]
        cells.setdefault(key[: len(keys)], {})[f"L={key[-2]},D={key[-1]}"] = cell
    rows = [dict(zip(keys, k, strict=True)) | v for k, v in cells.items()]
    table = pd.DataFrame(rows)
    grid = sorted(
        (c for c in table.columns if c.startswith("L=")),
        key=lambda c: tuple(int(x.split("=")[1]) for x in c.split(",")),
    )
    return table[keys + grid].fillna("").rename(columns=lambda c: c.removeprefix("task."))


def arm_of(row: pd.Series) -> str:
    """An extrapolation arm: the variant with its parameters, and the LM's input scheme when the
    task (not the variant) set one."""
    position = row.get("task.position")
    extra = f" + {position} input" if isinstance(position, str) and position not in ("", "none") else ""
    return f"{row['label']}{extra}"


def explode(df: pd.DataFrame, column: str, base) -> pd.DataFrame:
    """One row per item of each case's list metric `column` (a task's per-length results),
    each with `base(case row)`; a case that did not run gives one row with its status."""
    rows = []
    for _, r in df.iterrows():
        items = r.get(column)
        if r["status"] != "ok" or not isinstance(items, list):
            rows.append({**base(r), "status": r["status"], "reason": r.get("error")})
        else:
            rows.extend({"status": "ok", **base(r), **item} for item in items)
    return pd.DataFrame(rows)


def eval_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (case, evaluation length, mode) of extrapolation results: arm, train_len,
    length, factor, mode ("windows" or "sliding (stride s)"), status, ppl, bpb, …"""
    base = lambda r: {
        "arm": arm_of(r),
        "case_id": r["case_id"],
        "train_len": r.get("task.seq_len"),
        "device": r.get("device"),
        "dtype": r.get("dtype"),
    }
    rows = explode(df, "evals", base).drop(columns=["bucket_loss"], errors="ignore")
    if "mode" in rows:
        sliding = rows["mode"] == "sliding"
        rows.loc[sliding, "mode"] = (
            "sliding (stride " + rows.loc[sliding, "stride"].astype(int).astype(str) + ")"
        )
    return rows


def _ppl_cell(ppl: float) -> str:
    return f"{ppl:.2f}" if ppl < 1000 else f"{ppl:.3g}"


def extrapolation_table(df: pd.DataFrame, *, raw: bool = False) -> pd.DataFrame:
    """Rows: arm (and training length, mode, device when they vary); columns: perplexity at each
    evaluation length ("N (k×)"), then the ratio of the longest to the training length."""
    ev = eval_rows(df)
    keys = ["arm"] + [c for c in ("train_len", "mode", "device", "dtype") if c in ev and ev[c].nunique() > 1]
    rows = []
    for key, group in ev.groupby(keys, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key, strict=True))
        ppl_at = {}
        for _, e in group.sort_values("length", na_position="first").iterrows():
            if pd.isna(e.get("length")):
                row["status"] = e["status"]
                continue
            column = f"{int(e['length'])} ({e['factor']:g}×)"
            ok = e["status"] == "ok"
            if ok:
                ppl_at[e["factor"]] = e["ppl"]
            row[column] = (e["ppl"] if raw else _ppl_cell(e["ppl"])) if ok else e["status"]
        if 1 in ppl_at and len(ppl_at) > 1:
            longest = max(ppl_at)
            ratio = ppl_at[longest] / ppl_at[1]
            row[f"{longest:g}× / 1×"] = ratio if raw else f"{ratio:.2f}"
        rows.append(row)
    table = pd.DataFrame(rows)
    lengths = sorted((c for c in table.columns if c.endswith("×)")), key=lambda c: int(c.split()[0]))
    rest = [c for c in table.columns if c not in keys and c not in lengths]
    return table[keys + lengths + rest].fillna("")


def decode_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (case, output length) of decode results: label, batch, output_len,
    ms_per_token, tokens_per_s, state_bytes, …"""
    base = lambda r: {
        "label": r["label"],
        "batch": r.get("task.batch"),
        "device": r.get("device"),
        "dtype": r.get("dtype"),
        "decode_state": r.get("decode_state"),
    }
    return explode(df, "points", base)


def crossover(ours: dict[int, float], theirs: dict[int, float]) -> float | None:
    """The output length from which `ours` (ms per token by output length) stays below
    `theirs`, interpolated in log-log between the checkpoints around the crossing; 0 when it is
    below from the start, None when it never gets there (or gets there and rises again)."""
    lengths = sorted(set(ours) & set(theirs))
    below = [ours[n] < theirs[n] for n in lengths]
    if not lengths or not below[-1]:
        return None
    first = len(below) - below[::-1].index(False) if False in below else 0
    if first == 0:
        return 0
    n0, n1 = lengths[first - 1], lengths[first]
    d0 = math.log(ours[n0]) - math.log(theirs[n0])
    d1 = math.log(ours[n1]) - math.log(theirs[n1])
    frac = d0 / (d0 - d1) if d0 != d1 else 1.0
    return math.exp(math.log(n0) + frac * (math.log(n1) - math.log(n0)))


def decode_table(df: pd.DataFrame, *, raw: bool = False, reference: str = "softmax.sdpa") -> pd.DataFrame:
    """Rows: variant × batch; columns: ms per token at each output length, the state's bytes at
    the longest, and the output length from which the variant is cheaper per token than the
    reference (softmax.sdpa's KV cache) at the same batch."""
    ev = decode_rows(df)
    keys = ["label", "batch"] + [c for c in ("device", "dtype") if c in ev and ev[c].nunique() > 1]
    ok = ev[ev["status"] == "ok"] if "ms_per_token" in ev else ev.iloc[0:0]
    ref = {}
    for key, group in ok[ok["label"] == reference].groupby(keys[1:], dropna=False):
        times = dict(zip(group["output_len"], group["ms_per_token"], strict=True))
        ref[key if isinstance(key, tuple) else (key,)] = times
    rows = []
    for key, group in ev.groupby(keys, dropna=False, sort=False):
        row = dict(zip(keys, key, strict=True))
        row["state"] = group["decode_state"].iloc[0]
        done = group[group["status"] == "ok"]
        if done.empty or "ms_per_token" not in done:
            row["status"] = group["status"].iloc[0]
            rows.append(row)
            continue
        for _, pt in done.sort_values("output_len").iterrows():
            row[f"T={int(pt['output_len'])}"] = pt["ms_per_token"] if raw else f"{pt['ms_per_token']:.3g}"
        last = done.loc[done["output_len"].idxmax()]
        mib = last["state_bytes"] / 2**20
        row["state MiB"] = mib if raw else f"{mib:.3g}"
        theirs = ref.get(tuple(key[1:]))
        if theirs and row["label"] != reference:
            cross = crossover(dict(zip(done["output_len"], done["ms_per_token"], strict=True)), theirs)
            row[f"cheaper than {reference} from T"] = (
                cross if raw else ("never" if cross is None else "start" if cross == 0 else f"{cross:.0f}")
            )
        rows.append(row)
    table = pd.DataFrame(rows)
    lengths = sorted((c for c in table.columns if c.startswith("T=")), key=lambda c: int(c[2:]))
    rest = [c for c in table.columns if c not in keys and c not in lengths]
    return table[keys + lengths + rest].fillna("")


def convert_table(df: pd.DataFrame, *, raw: bool = False) -> pd.DataFrame:
    """Rows: the variant swapped in; columns: validation perplexity of the softmax source, right
    after the swap, after finetuning and from scratch (as many steps in all), and finetuning's
    tokens/s."""
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
                row[name] = (
                    r[key] if raw else (f"{r[key]:.0f}" if key.endswith("per_s") else _ppl_cell(r[key]))
                )
            row["steps (pretrain + finetune = scratch)"] = (
                f"{int(r['pretrain_steps'])} + {int(r['finetune_steps'])} = {int(r['scratch_steps'])}"
            )
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


TITLES = {
    "retrieval": "best evaluation loss by S (0.5·squared error), and capacity",
    "mqar": "MQAR held-out query accuracy (best over learning rates)",
    "extrapolation": "validation perplexity (bytes) by evaluation length, trained at 1×",
    "decode": "milliseconds per generated token by output length T (after the prompt), state bytes",
    "convert": "swap-then-finetune: validation perplexity at the training length",
}


def task_table(
    df: pd.DataFrame,
    task: str,
    *,
    threshold: float = CAPACITY_THRESHOLD,
    raw: bool = False,
    unsupported: bool = False,
) -> pd.DataFrame:
    """The task's table; variants that could not run at all are left out unless `unsupported`."""
    if not unsupported:
        df = hide_unsupported(df)
    if task == "retrieval":
        return capacity_table(df, threshold, raw=raw)
    if task == "mqar":
        return mqar_table(df, raw=raw)
    if task == "extrapolation":
        return extrapolation_table(df, raw=raw)
    if task == "decode":
        return decode_table(df, raw=raw)
    if task == "convert":
        return convert_table(df, raw=raw)
    raise UserError(f"no table for task {task!r}")
