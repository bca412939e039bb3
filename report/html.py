"""The report as one self-contained HTML page: the table, notes and plots (PNG inlined as base64), no network.

Every text that comes from a run record (method details, model names, notes, paths) is escaped:
a run folder or a dataset named ``<script>`` shows as text and never runs.
"""

import base64
import html
from pathlib import Path

from common.htmlsafe import script_json
from common.paths import ensure_writable_dir
from common.writes import atomic_file
from report.markdown import HTML_MARKER, caption, format_rows, title

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 75em; padding: 0 1em; color: #222; }
div.table { overflow-x: auto; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: .3em .6em; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; white-space: normal; min-width: 12em; }
tr.reference td { font-weight: bold; }
p.caption { color: #555; max-width: 60em; }
ul.notes { color: #8a5a00; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; }
"""


def render_html(report) -> str:
    """The page as a string: a heading, the wide table, the caption and notes, each plot inlined."""
    header, cells = format_rows(report)
    rows = "\n".join(
        ('<tr class="reference">' if r.is_reference else "<tr>")
        + "".join(f"<td>{html.escape(cell)}</td>" for cell in line)
        + "</tr>"
        for r, line in zip(report.rows, cells)
    )
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in report.notes)
    figures = "\n".join(_figure(Path(plot)) for plot in report.plots)
    runs = ", ".join(f"<code>{html.escape(str(run))}</code>" for run in report.runs)
    # the rows for a script or a reader: JSON in a data block (never run), escaped so no value can end it
    data = script_json({"rows": [r.to_dict() for r in report.rows], "notes": list(report.notes)})
    return f"""{HTML_MARKER}
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{html.escape(title(report))}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{html.escape(title(report))}</h1>
<div class="table"><table id="report">
<thead><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in header)}</tr></thead>
<tbody>
{rows}
</tbody>
</table></div>
<p class="caption">{html.escape(caption(report))}</p>
{f'<ul class="notes">{notes}</ul>' if notes else ""}
{figures}
<p class="caption">Runs: {runs}</p>
<script type="application/json" id="report-data">{data}</script>
</body>
</html>
"""


def write_html(path: Path, report) -> Path:
    path = Path(path)
    ensure_writable_dir(path.parent)
    with atomic_file(path, "w") as stream:
        stream.write(render_html(report))
    return path


def _figure(plot: Path) -> str:
    encoded = base64.b64encode(plot.read_bytes()).decode("ascii")
    name = html.escape(plot.stem.replace("-", " "))
    return f'<figure><img alt="{name}" src="data:image/png;base64,{encoded}"><figcaption>{name}</figcaption></figure>'
