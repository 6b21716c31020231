"""One self-contained HTML report from results files: the environment and suite, every
figure the results can fill (PNG, embedded as data), and sortable tables with the status of
every case and the spread next to each median.

Rendered with jinja2 under autoescape, so every string that comes from results (a variant's
label, a suite name, an error message) is text in the page, never markup. The page needs no
network: styles and the sorting script are inline.
"""

from __future__ import annotations

import base64
import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd

from attnbench.errors import UserError
from attnbench.report import figures
from attnbench.report.frontier import frontier_table, plot_frontier
from attnbench.report.table import hide_unsupported
from attnbench.report.task_tables import task_column, task_table
from attnbench.results.store import STATUSES

TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
table.sortable th { cursor: pointer; background: #f4f4f4; user-select: none; }
table.sortable th[aria-sort="ascending"]::after { content: " ▲"; }
table.sortable th[aria-sort="descending"]::after { content: " ▼"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status-ok { color: #1a7f37; } .status-oom, .status-error, .status-crash, .status-timeout { color: #c62828; }
.status-unsupported { color: #888; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 12px; }
.counts span { margin-right: 1.2em; font-weight: 600; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<section id="summary">
<h2>Environment and suite</h2>
<table class="kv">
{% for key, value in environment %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>
{% endfor %}</table>
<p class="counts">{% for status, count in counts -%}
<span class="status-{{ status }}">{{ count }} {{ status }}</span>
{%- endfor %}</p>
</section>
{% if figures %}<section id="figures"><h2>Figures</h2>
{% for fig in figures %}<figure><img alt="{{ fig.title }}" src="data:image/png;base64,{{ fig.data }}">
<figcaption>{{ fig.title }}</figcaption></figure>
{% endfor %}</section>{% endif %}
{% for table in tables %}<section><h2>{{ table.title }}</h2>
<table class="sortable">
<thead><tr>{% for column in table.columns %}<th>{{ column }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in table.rows %}<tr>
{%- for cell in row %}<td class="{{ cell.css }}">{{ cell.text }}</td>{% endfor -%}
</tr>
{% endfor %}</tbody></table></section>
{% endfor %}
<script>
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].textContent, y = b.cells[column].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
</script>
</body>
</html>
"""


@dataclass(frozen=True)
class Cell:
    text: str
    css: str = ""


@dataclass(frozen=True)
class Table:
    title: str
    columns: list[str]
    rows: list[list[Cell]]


@dataclass(frozen=True)
class Figure:
    title: str
    data: str  # base64 PNG


def _cell(value) -> Cell:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return Cell("")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Cell(f"{value:.4g}" if isinstance(value, float) else str(value), "num")
    text = str(value)
    return Cell(text, f"status-{text}" if text in STATUSES else "")


def frame_table(title: str, df: pd.DataFrame) -> Table:
    return Table(
        title, [str(c) for c in df.columns], [[_cell(v) for v in row] for row in df.itertuples(index=False)]
    )


def cases_table(df: pd.DataFrame) -> Table:
    """Every benchmark case: its shape, status, median latency with its spread, peak memory,
    error against float64, and why it did not run."""
    rows = []
    for _, r in df.sort_values(["label", "mode", "causal", "seq_len"]).iterrows():
        median, iqr = r.get("latency_ms"), r.get("latency_iqr_ms")
        spread = (
            f"±{50 * iqr / median:.1f}%"
            if median and iqr is not None and not pd.isna(iqr) and median > 0
            else ""
        )
        peak = r.get("peak_mem_bytes")
        rows.append(
            [
                _cell(r["label"]),
                _cell(f"B{r['batch']} H{r['heads']} N{r['seq_len']} D{r['d_head']}"),
                _cell(r["dtype"]),
                _cell(r["device"]),
                _cell("causal" if r["causal"] else "full"),
                _cell(r["mode"]),
                _cell(r["status"]),
                _cell(median),
                Cell(spread, "num"),
                _cell(None if peak is None or pd.isna(peak) else peak / 2**20),
                _cell(r.get("rel_err")),
                _cell(r.get("error")),
            ]
        )
    columns = ["variant", "shape", "dtype", "device", "mask", "mode", "status", "median ms", "spread",
               "peak MiB", "rel err", "reason"]  # fmt: skip
    return Table("Every case (click a header to sort)", columns, rows)


def _png(draw: Callable[[Path], object]) -> str | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figure.png"
        try:
            draw(path)
        except UserError:  # nothing in these results to draw
            return None
        return base64.b64encode(path.read_bytes()).decode()


def benchmark_figures(df: pd.DataFrame) -> list[Figure]:
    """Latency, throughput and peak memory against N, one figure each per (mask, mode) the results hold; the
    crossover against softmax and the positional schemes' costs when the results have them."""
    out = []
    extra = [("where other variants overtake softmax.sdpa (latency ratio)", figures.plot_crossover)]
    if "params" in df and df["params"].fillna("").str.contains("position=").any():
        extra.append(("cost of each positional scheme", figures.plot_position_costs))
    for title, draw in extra:
        data = _png(lambda p, draw=draw: draw(df, p))
        if data:
            out.append(Figure(title, data))
    for (causal, mode), part in df.groupby(["causal", "mode"], sort=True):
        where = f"{'causal' if causal else 'full'} {mode}"
        for name, what in (
            ("latency_ms", "latency"),
            ("tokens_per_s", "throughput"),
            ("peak_mem_bytes", "peak memory"),
        ):
            if name in part and part[name].notna().any():
                title = f"{what} vs sequence length, {where}"
                data = _png(
                    lambda p, part=part, name=name, title=title: figures.plot_vs_seq_len(
                        part, name, p, title=title
                    )
                )
                if data:
                    out.append(Figure(title, data))
    return out


TASK_FIGURES = {
    "retrieval": (
        "loss vs stored pairs S (capacity)",
        lambda df, p: figures.plot_capacity(df, p, threshold=0.01),
    ),
    "extrapolation": ("perplexity vs evaluation length", figures.plot_extrapolation),
    "decode": ("decoding cost and state vs output length", figures.plot_decode),
}


def build_report(df: pd.DataFrame, *, title: str) -> str:
    """The report's HTML for the results in `df` (one or more suites)."""
    if df.empty:
        raise UserError("no results to report")
    task_names = task_column(df)
    benchmark = df[task_names.isna()]
    figs: list[Figure] = []
    tables: list[Table] = []
    if not benchmark.empty:
        figs += benchmark_figures(benchmark)
        tables.append(cases_table(benchmark))
    for task in sorted(task_names.dropna().unique()):
        part = df[task_names == task]
        if task in TASK_FIGURES:
            caption, draw = TASK_FIGURES[task]
            data = _png(lambda p, part=part, draw=draw: draw(part, p))
            if data:
                figs.append(Figure(f"{task}: {caption}", data))
        with contextlib.suppress(UserError):  # a task without a table of its own
            tables.append(frame_table(f"{task} results", task_table(part, task, unsupported=True)))
        tables.append(frame_table(f"{task}: status of every case", part[["label", "status", "error"]]))
    frontier = frontier_table(df)
    if not frontier.empty:
        where = frontier.attrs.get("shape", "no speed results: quality only")
        data = _png(lambda p: plot_frontier(frontier, p))
        if data:
            figs.append(Figure(f"speed–quality frontier ({where})", data))
        tables.append(frame_table(f"Speed–quality frontier, cost at {where} (★ Pareto-optimal)", frontier))
    environment = [
        ("suites", ", ".join(sorted(df["suite"].dropna().astype(str).unique()))),
        ("devices", ", ".join(sorted(df["device_name"].dropna().astype(str).unique()))),
        ("torch", ", ".join(sorted(df["torch"].dropna().astype(str).unique()))),
        ("git revision", ", ".join(sorted(df["git_revision"].dropna().astype(str).unique()))),
        ("hosts", ", ".join(sorted(df["hostname"].dropna().astype(str).unique()))),
        ("cases", str(len(df))),
        (
            "variants that could not run here",
            ", ".join(sorted(set(df["label"]) - set(hide_unsupported(df)["label"]))),
        ),
    ]
    counts = sorted(df["status"].value_counts().items(), key=lambda kv: (kv[0] != "ok", kv[0]))
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(TEMPLATE).render(
        title=title, environment=environment, counts=counts, figures=figs, tables=tables
    )


def write_report(df: pd.DataFrame, path: str | Path, *, title: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_report(df, title=title), encoding="utf-8")
    return path
