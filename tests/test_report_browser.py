"""`mlx report --html`: one self-contained page (plots inlined, no network) drawn by headless Chromium.

Skipped, saying why, when no Chromium is installed (`.ci/run` installs the Debian package).
"""

import base64
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import fake_run

from report.join import ReportConfig, build_report

CHROMIUM = next(
    (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None
)
HOSTILE = "</td><script>alert(1)</script><!--"


def _page(tmp_path, model="tiny-bert"):
    probe = fake_run(tmp_path / "probe", "probe", {"logreg-a": 0.8, "logreg-b": 0.7}, layers=True, model=model)
    finetune = fake_run(tmp_path / "ft", "finetune", {"finetune": 0.9}, seed=1, model=model)
    page = tmp_path / "report.html"
    build_report(ReportConfig(runs=(str(probe), str(finetune)), out=tmp_path / "plots", html=page))
    return page


def test_the_page_holds_the_table_and_every_plot_inline_and_escapes_what_runs_say(tmp_path):
    page = _page(tmp_path, model=HOSTILE)
    text = page.read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == len(list((tmp_path / "plots").glob("*.png"))) >= 2
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert not re.search(r"(src|href)=\"(http|//)", text)  # nothing from the network
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S).group(1)
    assert [row["model"] for row in json.loads(block)["rows"]] == [HOSTILE, HOSTILE]
    assert text.count("<tr") == 1 + 2  # header, fine-tune, the logreg chosen on validation


def test_report_html_refuses_to_write_over_a_foreign_file(tmp_path):
    from helpers import invoke

    probe = fake_run(tmp_path / "probe", "probe", {"logreg-a": 0.8})
    finetune = fake_run(tmp_path / "ft", "finetune", {"finetune": 0.9}, seed=1)
    foreign = tmp_path / "mine.html"
    foreign.write_text("<p>my notes</p>")
    result = invoke("report", probe, finetune, "--no-plots", "--html", foreign)
    assert result.exit_code != 0 and "not an mlx report" in result.stderr and foreign.read_text() == "<p>my notes</p>"
    again = invoke("report", probe, finetune, "--no-plots", "--html", tmp_path / "r.html")
    assert again.exit_code == 0 and "html:" in again.stderr
    assert invoke("report", probe, finetune, "--no-plots", "--html", tmp_path / "r.html").exit_code == 0  # its own


@pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium); the page is not tested in a browser"
)
def test_chromium_draws_the_table_and_the_inlined_plots(tmp_path):
    page = _page(tmp_path, model=HOSTILE)
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<table id="report">' in dom.stdout and "fine-tune" in dom.stdout
    # the hostile model name stayed text: the one script element is the JSON data block, whole
    assert dom.stdout.count("<script") == 1 and "<script>alert" not in dom.stdout
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', dom.stdout, re.S).group(1)
    assert {row["model"] for row in json.loads(html.unescape(block))["rows"]} == {HOSTILE}
    shot = tmp_path / "shot.png"
    run = subprocess.run(
        [*common, "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]  # (H, W, 3) floats 0..1
    red = ((pixels[..., 0] > 0.7) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)).sum()  # fine-tune points
    blue = ((pixels[..., 2] > 0.6) & (pixels[..., 0] < 0.3)).sum()  # frozen-probe points
    assert red > 20 and blue > 20, (red, blue)  # the inlined PNGs were decoded and drawn


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc, a folder that takes no new files")
@pytest.mark.parametrize("option", ["--html", "--markdown"])
def test_a_report_target_that_takes_no_files_is_one_line(tmp_path, option):
    from helpers import invoke

    probe = fake_run(tmp_path / "probe", "probe", {"logreg-a": 0.8})
    finetune = fake_run(tmp_path / "ft", "finetune", {"finetune": 0.9}, seed=1)
    result = invoke("report", probe, finetune, option, "/proc/report.out")
    assert result.exit_code == 1 and result.stderr.startswith("error: cannot write the report")
    assert result.stderr.count("\n") == 1
