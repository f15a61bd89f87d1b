"""The Dagster UI in a real browser: materialize everything with ``python -m assets.demo`` on a tiny
grid, start ``dagster dev`` on that instance, and read the rendered pages with headless Chromium.

Pages checked (Dagster 1.13):
- ``/asset-groups?expanded=...``                   the global asset lineage, every group expanded
- ``/assets/semantic_ids?view=partitions&partition=v1-k16``  one partition's materialization metadata
- ``/assets/experiment_report``                    the report asset's overview and metadata

Screenshots land in ``tests/.screenshots/`` (ignored by git); their paths are printed and recorded
as test properties. Needs Debian's ``chromium`` (``apt-get install chromium``); skipped without it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from browser_util import (
    REPO_ROOT,
    SCREENSHOT_DIR,
    Page,
    render_until,
    start_dagster_dev,
    write_dagster_yaml,
    write_tiny_semid_toml,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("chromium") is None,
        reason="Debian chromium is not installed (`apt-get install chromium`); the browser test needs it",
    ),
]

ASSETS = ["feedback_events", "track_catalog", "content_features", "semantic_ids", "recommender",
          "evaluation", "experiment_report"]
# Asset groups as declared in assets/*.py. The lineage page collapses groups when there are several;
# its `expanded` query parameter opens them (group ids read `global@global:<group>`).
GROUPS = ["ingestion", "semantic_ids", "recommender", "evaluation"]
GRID_PARTITIONS = ["16|id", "16|v0-k16", "16|v1-k16"]  # what write_tiny_semid_toml configures
ERROR_TEXTS = ["Something went wrong", "Unexpected GraphQL error", "An unexpected exception"]


class UI:
    def __init__(self, url: str, root: Path, report_path: Path, timings: dict[str, float]):
        self.url, self.root, self.report_path, self.timings = url, root, report_path, timings

    def page(self, path: str, name: str, expected: list[str]) -> Page:
        t0 = time.monotonic()
        page = render_until(self.url + path, SCREENSHOT_DIR / f"{name}.png", self.root, expected)
        self.timings[f"chromium {name}"] = time.monotonic() - t0
        return page


def _attach(request, page: Page) -> None:
    """Record the screenshot path with the test and show it in the terminal output."""
    request.node.user_properties.append(("screenshot", str(page.screenshot)))
    request.node.add_report_section("call", "screenshot", f"{page.url}\n{page.screenshot}\n")
    _say(request, f"[browser] {page.url} -> screenshot {page.screenshot}")


def _say(request, line: str) -> None:
    """Write a line to the terminal even while pytest captures output (`make test` shows it)."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None:
        print(line)
        return
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.ensure_newline()
        reporter.write_line(line)


def _missing(page: Page, expected: list[str]) -> list[str]:
    return [s for s in expected if s not in page.text]


def _assert_rendered(page: Page, expected: list[str]) -> None:
    missing = _missing(page, expected)
    assert not missing, (
        f"{page.url}: rendered page lacks {missing} (screenshot {page.screenshot}); page text starts: "
        f"{page.text[:1500]!r}"
    )
    errors = [e for e in ERROR_TEXTS if e in page.text]
    assert not errors, f"{page.url}: page shows an error {errors} (screenshot {page.screenshot})"


@pytest.fixture(scope="module")
def ui(tmp_path_factory, request):
    """Tiny grid materialized by `python -m assets.demo` on a fresh instance, shown by `dagster dev`."""
    root = tmp_path_factory.mktemp("browser")
    home = root / "home"
    write_dagster_yaml(home)
    config = write_tiny_semid_toml(root / "semid.toml", landing_dir=root / "landing")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SEMID_CONFIG": str(config),
        "SEMID_DATASET": "synthetic:tiny",
        "SEMID_WAREHOUSE": str(root / "wh.duckdb"),
        "SEMID_ARTIFACTS": str(root / "artifacts"),
        "SEMID_DATA_DIR": str(root / "data"),
        "PYTHONUNBUFFERED": "1",
    }
    timings: dict[str, float] = {}

    t0 = time.monotonic()
    demo = subprocess.run(
        [sys.executable, "-m", "assets.demo"], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=480,
    )
    timings["assets.demo"] = time.monotonic() - t0
    assert demo.returncode == 0, f"assets.demo failed ({demo.returncode}):\n{demo.stdout[-4000:]}\n{demo.stderr[-4000:]}"
    match = re.search(r"^\[demo\] experiment report: (.+)$", demo.stdout, re.M)
    assert match, f"assets.demo printed no report path:\n{demo.stdout[-4000:]}"
    report_path = Path(match.group(1).strip())
    assert report_path == root / "artifacts" / "report" / "report.html", report_path
    assert report_path.is_file(), f"report {report_path} was not written"
    for key in GRID_PARTITIONS:
        assert f"recommender+eval[{key}]" in demo.stdout, demo.stdout

    t0 = time.monotonic()
    dev = start_dagster_dev(env, root / "dagster_dev.log", timeout_s=120)
    timings["dagster dev start"] = time.monotonic() - t0
    try:
        yield UI(dev.url, root, report_path, timings)
    finally:
        dev.stop()
        _say(request, "[browser] timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))


def test_asset_graph_shows_every_asset(ui, request):
    expanded = ",".join(f"global@global:{g}" for g in GROUPS)
    path = "/asset-groups?" + urllib.parse.urlencode({"expanded": expanded})
    page = ui.page(path, "asset_graph", ASSETS)
    _attach(request, page)
    _assert_rendered(page, ["Global asset lineage", *GROUPS, *ASSETS])


def test_semantic_ids_partition_shows_its_metadata(ui, request):
    path = "/assets/semantic_ids?" + urllib.parse.urlencode({"view": "partitions", "partition": "v1-k16"})
    expected = ["content_hash", "per_level", "quality/unique_tuple_share"]
    page = ui.page(path, "semantic_ids_v1-k16", expected)
    _attach(request, page)
    _assert_rendered(page, [
        "semantic_ids", "v1-k16", "Materialized", "Metadata", *expected,
        "semantic_ids__v1_k16",  # the partition's own table, so this is v1-k16's materialization
        "utilization", "entropy_bits", "dagster/row_count", "mode", "fit",
    ])
    # the content hash itself is shown (a sha256 hex digest right after its key)
    assert re.search(r"content_hash (?:\S+ \d+, \d+:\d+ [AP]M )?[0-9a-f]{64}\b", page.text), page.text[:3000]
    share = re.search(r"quality/unique_tuple_share (?:\S+ \d+, \d+:\d+ [AP]M )?([0-9.]+)", page.text)
    assert share and 0.5 <= float(share.group(1)) <= 1.0, page.text[:3000]


def test_experiment_report_shows_its_metadata(ui, request):
    expected = ["report_html", "partitions_evaluated", "summary"]
    page = ui.page("/assets/experiment_report", "experiment_report", expected)
    _attach(request, page)
    _assert_rendered(page, [
        "experiment_report", "Metadata", *expected, "headline",
        str(ui.report_path),  # report_html is the file assets.demo announced
        *GRID_PARTITIONS,  # rows of the summary table
        "test AUC",
    ])
    n = re.search(r"partitions_evaluated (?:\S+ \d+, \d+:\d+ [AP]M )?(\d+)\b", page.text)
    assert n and int(n.group(1)) == len(GRID_PARTITIONS), page.text[:3000]
