"""Helpers for the browser test: a throw-away Dagster workspace, `dagster dev`, headless Chromium.

Standard library only. Chromium is Debian's (`apt-get install chromium`), driven through its own
command line: one `--screenshot` + `--dump-dom` run per page, with a virtual-time budget so the
Dagster UI (a single-page app polling GraphQL) has rendered before the DOM is read.
"""

from __future__ import annotations

import html.parser
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT_DIR = REPO_ROOT / "tests" / ".screenshots"

# Without the background-networking flags Chromium tries to reach Google services and this
# closed network refuses many connections; a fresh profile per run keeps runs independent.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
WINDOW_SIZE = "1600,1000"
VIRTUAL_TIME_BUDGET_MS = 20000  # the Dagster UI renders headless only with a budget of about this


def chromium_binary() -> str | None:
    return shutil.which("chromium")


# --------------------------------------------------------------------------- workspace

DAGSTER_YAML = """\
# Written by tests/browser_util.py: absolute paths, so any process cwd sees the same instance.
telemetry:
  enabled: false
nux:
  enabled: false
storage:
  sqlite:
    base_dir: {home}/storage
local_artifact_storage:
  module: dagster._core.storage.root
  class: LocalArtifactStorage
  config:
    base_dir: {home}
compute_logs:
  module: dagster._core.storage.local_compute_log_manager
  class: LocalComputeLogManager
  config:
    base_dir: {home}/logs
concurrency:
  pools:
    default_limit: 1
    granularity: op
  runs:
    max_concurrent_runs: 2
"""


def write_dagster_yaml(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    path.write_text(DAGSTER_YAML.format(home=home.resolve().as_posix()))
    return path


def _set_toml(text: str, section: str, key: str, value: str) -> str:
    """Set ``key = value`` in ``[section]`` of a TOML text (replaced in place, else added)."""
    pattern = re.compile(
        rf"(^\[{re.escape(section)}\][^\n]*\n(?:(?!^\[).*\n)*?)^{re.escape(key)}\s*=.*$", re.M
    )
    new, n = pattern.subn(lambda m: f"{m.group(1)}{key} = {value}", text, count=1)
    if n == 1:
        return new
    header = re.compile(rf"^\[{re.escape(section)}\][^\n]*\n", re.M)
    if header.search(text):  # the section exists without this key: add it
        return header.sub(lambda m: f"{m.group(0)}{key} = {value}\n", text, count=1)
    return f"{text.rstrip()}\n\n[{section}]\n{key} = {value}\n"


def write_tiny_semid_toml(path: Path, landing_dir: Path) -> Path:
    """The repository's semid.toml, shrunk to a grid of 3 ID schemes × 1 hidden size.

    Schemes ``id``, ``v0-k16``, ``v1-k16`` (no rqkmeans); h = 16; 2 epochs; the evaluation
    thresholds fit the tiny synthetic world (~40 test strata).
    """
    text = (REPO_ROOT / "semid.toml").read_text()
    text = re.sub(r"^landing_dir\s*=.*$", f'landing_dir = "{landing_dir.as_posix()}"', text, count=1, flags=re.M)
    schemes = re.compile(r"^\[semantic_ids\.schemes\][^\n]*\n(?:(?!^\[).*\n?)*", re.M)
    text, n = schemes.subn("[semantic_ids.schemes]\nv0 = [16]\nv1 = [16]\n\n", text, count=1)
    if n != 1:
        raise ValueError("semid.toml has no [semantic_ids.schemes] table")
    for section, key, value in [
        ("grid", "hidden_sizes", "[16]"),
        ("grid", "variants", "[]"),  # the repository's variants reuse v1-k1024, not in this grid
        ("grid", "demo_production_h_only", "[]"),  # nor is rqkmeans-k1024
        ("train", "epochs", "2"),
        ("production", "scheme", '"v1-k16"'),
        ("production", "hidden", "16"),
        ("eval", "min_strata", "5"),
        ("eval", "bootstrap", "100"),
    ]:
        text = _set_toml(text, section, key, value)
    path.write_text(text)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- dagster dev


@dataclass
class DagsterDev:
    proc: subprocess.Popen
    port: int
    log_path: Path
    env: dict | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self, grace_s: float = 15.0) -> None:
        """Interrupt the process group (dagster dev shuts down on SIGINT, not SIGTERM), then kill it."""
        if self.proc.poll() is None:
            pgid = os.getpgid(self.proc.pid)
            for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(pgid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # children (webserver, daemon, code server) share the group: make sure none outlive it
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        # some dagster children start sessions of their own: find them by this instance's DAGSTER_HOME
        home = (self.env or {}).get("DAGSTER_HOME")
        if home:
            for proc_dir in Path("/proc").glob("[0-9]*"):
                try:
                    env = (proc_dir / "environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                if f"DAGSTER_HOME={home}".encode() in env and int(proc_dir.name) != os.getpid():
                    try:
                        os.kill(int(proc_dir.name), signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass


def dagster_cli() -> list[str]:
    import sys

    exe = Path(sys.executable).parent / "dagster"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dagster"]


def start_dagster_dev(env: dict[str, str], log_path: Path, timeout_s: float = 120.0) -> DagsterDev:
    port = free_port()
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [*dagster_cli(), "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    dev = DagsterDev(proc, port, log_path, env)
    try:
        wait_until_loaded(dev, timeout_s)
    except BaseException:
        dev.stop()
        raise
    return dev


_LOCATIONS_QUERY = (
    "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus "
    "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
)


def graphql(url: str, query: str, variables: dict | None = None, timeout_s: float = 10.0) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"{url}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def wait_until_loaded(dev: DagsterDev, timeout_s: float) -> None:
    """Wait for /server_info, then for the code location to finish loading (a page rendered before
    that shows a spinner). Raises with the log tail when dagster dev dies or times out."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if dev.proc.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {dev.proc.returncode}:\n{dev.log_tail()}")
        try:
            with urllib.request.urlopen(f"{dev.url}/server_info", timeout=5) as resp:
                resp.read()
            entries = graphql(dev.url, _LOCATIONS_QUERY)["data"]["workspaceOrError"].get("locationEntries") or []
            last = repr(entries)
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e for e in entries if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"]
                if errors:
                    raise RuntimeError(f"code location failed to load: {errors}\n{dev.log_tail()}")
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, KeyError, ValueError) as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(1.0)
    raise TimeoutError(f"dagster dev not ready after {timeout_s:.0f}s ({last}):\n{dev.log_tail()}")


# --------------------------------------------------------------------------- chromium


class _TextExtractor(html.parser.HTMLParser):
    SKIP = {"script", "style", "noscript", "template"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def dom_text(dom: str) -> str:
    """Visible-ish text of a dumped DOM, whitespace collapsed to single spaces."""
    parser = _TextExtractor()
    parser.feed(dom)
    parser.close()
    return re.sub(r"\s+", " ", " ".join(parser.parts)).strip()


@dataclass
class Page:
    url: str
    screenshot: Path
    dom: str
    text: str


def render(url: str, screenshot: Path, profile_root: Path, *, budget_ms: int = VIRTUAL_TIME_BUDGET_MS,
           timeout_s: float = 90.0) -> Page:
    """One headless Chromium run: save a screenshot and return the rendered DOM and its text."""
    chromium = chromium_binary()
    if chromium is None:
        raise RuntimeError("chromium is not installed")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.unlink(missing_ok=True)
    profile = profile_root / f"chromium-profile-{time.monotonic_ns()}"
    profile.mkdir(parents=True)
    cmd = [
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW_SIZE}",
        f"--virtual-time-budget={budget_ms}",
        f"--screenshot={screenshot}",
        "--dump-dom",
        url,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TimeoutError(f"chromium did not finish {url} within {timeout_s:.0f}s")
    finally:
        try:  # zygote/renderer helpers share the session: never leave one behind
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        shutil.rmtree(profile, ignore_errors=True)
    dom = out.decode("utf-8", errors="replace")
    if proc.returncode != 0 or not dom.strip():
        raise RuntimeError(
            f"chromium exited {proc.returncode} on {url}:\n{err.decode(errors='replace')[-2000:]}"
        )
    if not screenshot.exists():
        raise RuntimeError(f"chromium wrote no screenshot for {url}")
    return Page(url=url, screenshot=screenshot, dom=dom, text=dom_text(dom))


def render_until(url: str, screenshot: Path, profile_root: Path, expected: list[str], attempts: int = 2) -> Page:
    """Render; if some expected text is missing (slow machine), render again with a doubled budget."""
    budget = VIRTUAL_TIME_BUDGET_MS
    page = render(url, screenshot, profile_root, budget_ms=budget)
    for _ in range(attempts - 1):
        if all(s in page.text for s in expected):
            break
        time.sleep(2.0)
        budget *= 2
        page = render(url, screenshot, profile_root, budget_ms=budget)
    return page
