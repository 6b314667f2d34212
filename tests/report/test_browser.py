"""report.html in a real headless browser (Debian's chromium): it renders, every plot is drawn, the key
numbers are on the page, and the browser logs no error."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from slimkit.cli.main import main


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no chromium here (apt-get install chromium; .ci/run installs it)")


def _browser(url: str, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--enable-logging=stderr", "--v=0", "--window-size=1280,2400"]
    env = {**os.environ, "HOME": str(Path(url.removeprefix("file://")).parent)}  # a profile of its own
    return subprocess.run([_chromium(), *flags, *args, url], capture_output=True, text=True, timeout=120, env=env)


def test_the_html_report_renders_in_a_real_browser(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["bench", "--task", "digits-cnn", "--targets", "torch,onnxruntime", "--quick", "--threads", "1",
                 "--quiet", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    url = f"file://{out / 'report.html'}"
    dom = _browser(url, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert page.count("<svg") == 2  # the latency and the size plot, both drawn
    assert page.count('class="point"') == 2 * (1 + len(report["candidates"]))  # every point, with a tooltip
    text = re.sub(r"<[^>]+>", " ", page)
    assert "Which model, and why" in text and "slimkit.load(" in text
    if report["best"]:
        best = next(c for c in report["candidates"] if c["id"] == report["best"])
        assert f"{best['speedup']['value']:.2f}x" in text  # the paired figure, on the page
    shot = _browser(url, f"--screenshot={tmp_path / 'page.png'}")
    assert shot.returncode == 0 and (tmp_path / "page.png").stat().st_size > 20_000  # not a blank page
    errors = [line for line in (dom.stderr + shot.stderr).splitlines()
              if "CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line]
    assert not errors, errors
