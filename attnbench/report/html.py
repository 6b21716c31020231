"""One self-contained HTML report from results files: the environment and suite, every
figure the results can fill (PNG, embedded as data), and sortable tables with the status of
every case and the spread next to each median.

Rendered with jinja2 under autoescape, so every string that comes from results (a variant's
label, a suite name, an error message) is text in the page, never markup. The page needs no
network: styles and the sorting script are inline.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
import pandas as pd

from attnbench.errors import UserError
from attnbench.report.benchmark import benchmark_section
from attnbench.report.frontier import frontier_table, plot_frontier
from attnbench.report.profiles import time_section
from attnbench.report.sections import Figure, Section, frame_table, png
from attnbench.report.table import DISTURBED, hide_unsupported, machines
from attnbench.results.frame import task_column
from attnbench.tasks import task_of_results

TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1em; margin-top: 1.2em; }
table { border-collapse: collapse; margin: .5em 0; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
table.sortable th { cursor: pointer; background: #f4f4f4; user-select: none; }
table.sortable th[aria-sort="ascending"]::after { content: " ▲"; }
table.sortable th[aria-sort="descending"]::after { content: " ▼"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.status-ok { color: #1a7f37; }
.status-inaccurate, .status-oom, .status-error, .status-crash, .status-timeout { color: #c62828; }
.status-unsupported { color: #888; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 12px; }
.counts span { margin-right: 1.2em; font-weight: 600; }
.banner { background: #fff4e5; border: 1px solid #f0a040; padding: .6em 1em; margin: 1em 0; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
{% if banner %}<p class="banner" id="disturbed"><strong>Disturbed timings.</strong> {{ banner }}</p>
{% endif %}<section id="summary">
<h2>Environment and suite</h2>
<table class="kv">
{% for key, value in environment %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>
{% endfor %}</table>
<p class="counts">{% for status, count in counts -%}
<span class="status-{{ status }}">{{ count }} {{ status }}</span>
{%- endfor %}</p>
</section>
{% for section in sections %}<section><h2>{{ section.title }}</h2>
{% for fig in section.figures %}<figure><img alt="{{ fig.title }}" src="data:image/png;base64,{{ fig.data }}">
<figcaption>{{ fig.title }}</figcaption></figure>
{% endfor %}{% for table in section.tables %}<h3>{{ table.title }}</h3>
<table class="sortable">
<thead><tr>{% for column in table.columns %}<th>{{ column }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in table.rows %}<tr>
{%- for cell in row %}<td class="{{ cell.css }}">{{ cell.text }}</td>{% endfor -%}
</tr>
{% endfor %}</tbody></table>
{% endfor %}</section>
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


DISTURBED_SHARE = 0.10  # the banner shows when more of the timed cases than this were disturbed


def disturbed_banner(df: pd.DataFrame) -> str | None:
    """A sentence for the top of the page when many timed cases were disturbed while timed
    (other processes on their cores, page faults): their numbers should not be trusted."""
    if "latency_ms" not in df:
        return None
    timed = df[df["latency_ms"].notna()]
    if timed.empty:
        return None
    flags = timed["flags"].fillna("").str.split(",")
    counts = {name: int(flags.map(lambda f, name=name: name in f).sum()) for name in DISTURBED}
    disturbed = int(flags.map(lambda f: any(name in f for name in DISTURBED)).sum())
    if disturbed <= DISTURBED_SHARE * len(timed):
        return None
    return (
        f"{disturbed} of {len(timed)} timed cases were disturbed while timed "
        f"({counts['contended']} contended: other processes ran on their cores; {counts['page_faults']} "
        "with page faults). Their times are not to be trusted: rerun on a quiet machine, with replicates "
        "(--repeat), and compare within one job."
    )


def build_report(df: pd.DataFrame, *, title: str) -> str:
    """The report's HTML for the results in `df` (one or more suites)."""
    if df.empty:
        raise UserError("no results to report")
    task_names = task_column(df)
    benchmark = df[task_names.isna()]
    sections: list[Section] = []
    if not benchmark.empty:
        sections.append(benchmark_section(benchmark))
        where = time_section(benchmark)
        if where is not None:
            sections.append(where)
    for name in sorted(task_names.dropna().unique()):
        sections.append(task_of_results(name).report_section(df[task_names == name]))
    frontier = frontier_table(df)
    if not frontier.empty:
        where = frontier.attrs.get("shape", "no speed results: quality only")
        data = png(lambda p: plot_frontier(frontier, p))
        figs = [Figure(f"speed–quality frontier ({where})", data)] if data else []
        table = frame_table(f"cost at {where} (★ Pareto-optimal)", frontier)
        sections.append(Section("Speed–quality frontier", figs, [table]))
    environment = [
        ("suites", ", ".join(sorted(df["suite"].dropna().astype(str).unique()))),
        ("devices", ", ".join(sorted(df["device_name"].dropna().astype(str).unique()))),
        ("torch", ", ".join(sorted(df["torch"].dropna().astype(str).unique()))),
        ("git revision", ", ".join(sorted(df["git_revision"].dropna().astype(str).unique()))),
        ("hosts", machines(df) or ", ".join(sorted(df["hostname"].dropna().astype(str).unique()))),
        ("DAMON pageout", _env_values(df, "damon_pageout")),
        ("cpufreq governor", _env_values(df, "cpu_governor")),
        ("cases", str(len(df))),
        (
            "variants that could not run here",
            ", ".join(sorted(set(df["label"]) - set(hide_unsupported(df)["label"]))),
        ),
    ]
    counts = sorted(df["status"].value_counts().items(), key=lambda kv: (kv[0] != "ok", kv[0]))
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(TEMPLATE).render(
        title=title,
        environment=environment,
        counts=counts,
        sections=sections,
        banner=disturbed_banner(benchmark) if not benchmark.empty else None,
    )


def _env_values(df: pd.DataFrame, column: str) -> str:
    """The values an environment column takes, or `not recorded`."""
    if column not in df or df[column].isna().all():
        return "not recorded"
    return ", ".join(sorted(df[column].dropna().astype(str).unique()))


def write_report(df: pd.DataFrame, path: str | Path, *, title: str) -> Path:
    path = Path(path)
    page = build_report(df, title=title)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot write the report {path}: {e.strerror or e}") from None
    return path
