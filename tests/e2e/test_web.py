"""The web view in a real browser: Debian's Chromium driven by Playwright against a running
``evtwin api`` on a private embedded stack, fed by a short live pipeline (simulator → score
worker → database sink). The fleet page loads every pack and moves with the live stream; a
battery page draws its charts from the history and a non-empty WebGL 3D pack; the desired-state
form writes through the API and reads back; the topics page shows offsets and decoded records.
Screenshots of every page are kept under pytest's temporary directory (``web-screenshots*``)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from connectors.embedded.process import stop_processes
from connectors.embedded.stack import EmbeddedStack
from connectors.kafka import ensure_topics
from streams.api.security import hash_key
from streams.topics import PREDICTIONS, topic_specs
from tests.support.cli import EVTWIN, cli_env
from tests.support.paths import REPO
from tests.support.stack_settings import free_port_settings
from tests.support.workers import Workers

BATTERIES = 24
API_KEY = "web-test-key"
#: Chromium flags: no sandbox (we run as root), nothing fetched from the network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"]


@dataclass
class WebRun:
    url: str
    batteries: list[str]
    shots: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(args: list[str], state: Path, name: str, **env: str) -> subprocess.Popen[bytes]:
    log = open(state / f"{name}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(EVTWIN + args, env=cli_env(state, EVTWIN_METRICS_PORT="0", **env),
                            cwd=REPO, stdout=log, stderr=log)
    proc.log_path = state / f"{name}.log"  # type: ignore[attr-defined]
    return proc


def _tail(proc: subprocess.Popen[bytes], n: int = 30) -> str:
    path = Path(proc.log_path)  # type: ignore[attr-defined]
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return f"--- {path.name} ---\n" + "\n".join(lines[-n:])


def _wait_api(url: str, procs: list[subprocess.Popen[bytes]], want: int, timeout: float = 120) -> list[str]:
    """Wait until the API lists ``want`` packs that have a prediction; returns their ids."""
    deadline = time.monotonic() + timeout
    ids: list[str] = []
    while time.monotonic() < deadline:
        for p in procs:
            assert p.poll() is None, f"a pipeline process exited ({p.returncode})\n{_tail(p)}"
        try:
            page = httpx.get(f"{url}/api/batteries", params={"limit": 100}, timeout=5).json()
            ids = [b["battery_id"] for b in page["items"] if b.get("rul_cycles") is not None]
            if len(ids) >= want:
                return ids
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(1)
    raise AssertionError(f"the API lists {len(ids)} of {want} packs after {timeout} s\n"
                         + "\n".join(_tail(p) for p in procs))


@pytest.fixture(scope="module")
def web(state_root: Path, trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebRun]:
    """A private embedded stack with the pipeline and ``evtwin api`` running on it."""
    state = Path(tempfile.mkdtemp(prefix="web-", dir=state_root))
    state.chmod(0o755)
    settings = free_port_settings(state)
    port = _free_port()
    with EmbeddedStack(settings) as ep:
        ensure_topics(ep.kafka_bootstrap_servers, topic_specs(settings.topic_partitions))
        workers = Workers(settings, trained_model, "web-score")
        workers.start(1)
        procs = [
            _spawn(["sink", "--kind", "database"], state, "sink"),
            _spawn(["simulate", "--batteries", str(BATTERIES), "--rate", "1", "--speedup", "0.1"], state, "simulate"),
            _spawn(["api"], state, "api", EVTWIN_API_PORT=str(port), EVTWIN_API_KEYS=hash_key(API_KEY)),
        ]
        url = f"http://127.0.0.1:{port}"
        try:
            ids = _wait_api(url, procs + workers.procs, BATTERIES)
            yield WebRun(url, sorted(ids), tmp_path_factory.mktemp("web-screenshots"))
        finally:
            for p in procs:
                print(_tail(p), file=sys.stderr)
            stop_processes(procs)
            workers.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    exe = shutil.which("chromium")
    assert exe, "Debian's chromium is not installed: run infra/system-deps.sh (make test does)"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page that fails the test on any script error."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, f"script errors in the page: {errors}"


def _shot(page: Page, web: WebRun, name: str) -> Path:
    """A screenshot of the whole page: the viewport grown to the page first, so the WebGL canvas
    and the sticky header are drawn once, in place (a full-page capture would stitch scrolls)."""
    path = web.shots / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": 1400, "height": min(max(height, 600), 4000)})
    page.wait_for_timeout(600)
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


def _predictions(frame: str | bytes) -> list[dict]:
    msg = json.loads(frame)
    return list(msg["data"]) if msg.get("type") == "predictions" else []


def _live_count(page: Page) -> int:
    return int(page.locator("#live-updates").get_attribute("data-count") or 0)


def test_fleet_page_loads_every_pack_and_moves_live(page: Page, web: WebRun) -> None:
    frames: list[dict] = []  # every prediction the page's WebSocket received, seen from outside
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.extend(_predictions(f))))
    page.goto(web.url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=20_000)
    # every pack the API lists is a row of the table and a cell of the grid
    rows = page.locator("#fleet-table tbody tr[data-battery]")
    expect(rows).to_have_count(len(web.batteries))
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.battery)")) == web.batteries
    expect(page.locator("#packgrid a[data-battery]")).to_have_count(len(web.batteries))
    summary = httpx.get(f"{web.url}/api/fleet/summary", timeout=10).json()
    expect(page.locator("#kpi-batteries")).to_have_text(str(summary["batteries"]))
    # the comparative charts hold the packs: the scatter one point per pack, the histogram them all
    points = page.evaluate("() => Chart.getChart('chart-scatter').data.datasets.reduce((n, d) => n + d.data.length, 0)")
    assert points == len(web.batteries)
    binned = page.evaluate("() => Chart.getChart('chart-rul').data.datasets[0].data.reduce((a, b) => a + b, 0)")
    assert binned == summary["batteries"]

    # live: the WebSocket brings predictions, and a pack's row moves to the newest reading
    expect(page.locator("#live .txt")).to_have_text("live", timeout=10_000)
    bid = web.batteries[0]
    row = page.locator(f"#fleet-table tr[data-battery='{bid}']")
    loaded_at = row.get_attribute("data-time") or ""
    page.wait_for_function(
        f"() => Date.parse(document.querySelector(\"#fleet-table tr[data-battery='{bid}']\").dataset.time)"
        f" > Date.parse('{loaded_at}')",
        timeout=30_000)
    assert _live_count(page) > 0
    # what the row shows is the prediction the stream carried for that reading
    shown_time, shown_soc = row.get_attribute("data-time"), row.locator("td").nth(6).inner_text()
    carried = {p["time"]: p for p in frames if p["battery_id"] == bid}
    assert shown_time in carried, (shown_time, sorted(carried)[-3:])
    assert abs(float(shown_soc) - carried[shown_time]["soc"]) <= 0.05 + 1e-9, (shown_soc, carried[shown_time])

    # a filter narrows the table to what it asks for
    page.select_option("#f-risk", "low")
    low = [b for b in httpx.get(f"{web.url}/api/batteries", params={"limit": 100}, timeout=10).json()["items"]
           if b["risk"] == "low"]
    badges = page.locator("#fleet-table tbody tr[data-battery] .badge").all_inner_texts()
    assert set(badges) <= {"low"} and abs(len(badges) - len(low)) <= 1
    page.select_option("#f-risk", "")
    _shot(page, web, "fleet")


def _webgl_pixels(page: Page) -> dict[str, int]:
    """Pixels of the 3D canvas that differ from its clear colour, and how many colours it shows."""
    return page.evaluate("""() => {
      const src = document.getElementById('pack3d-canvas');
      const c = document.createElement('canvas');
      c.width = src.width; c.height = src.height;
      const g = c.getContext('2d');
      g.drawImage(src, 0, 0);
      const px = g.getImageData(0, 0, c.width, c.height).data;
      let lit = 0; const colours = new Set();
      for (let i = 0; i < px.length; i += 4) {
        if (Math.abs(px[i] - 11) + Math.abs(px[i + 1] - 15) + Math.abs(px[i + 2] - 20) > 24) lit++;
        colours.add((px[i] >> 4) << 8 | (px[i + 1] >> 4) << 4 | (px[i + 2] >> 4));
      }
      const gl = src.getContext('webgl2') || src.getContext('webgl');
      return { lit, total: px.length / 4, colours: colours.size, webgl: gl ? 1 : 0 };
    }""")


def test_battery_page_draws_its_charts_and_the_3d_pack(page: Page, web: WebRun) -> None:
    bid = web.batteries[0]
    page.goto(f"{web.url}/battery.html?id={bid}")
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=20_000)
    expect(page.locator("#battery-id")).to_have_text(bid)
    # each chart holds the history's points (and more as the stream goes on)
    history = httpx.get(f"{web.url}/api/batteries/{bid}/history", timeout=10).json()
    assert history["points"], "the pack has no history"
    for name in ("soc", "soh", "temperature", "vi", "rul"):
        n = page.evaluate(f"() => Chart.getChart('chart-{name}').data.datasets[0].data.length")
        assert n >= min(len(history["points"]), 2), (name, n, len(history["points"]))
    # the gauge and the risk show the twin's prediction
    twin = httpx.get(f"{web.url}/api/batteries/{bid}", timeout=10).json()
    assert page.locator("#rul-p50").inner_text() != "–"
    assert page.locator("#risk-badge .badge").inner_text() in ("low", "medium", "high")
    assert twin["prediction"]["risk"] in ("low", "medium", "high")
    # the battery-level fault detection the worker computed reaches the page (through the table)
    assert isinstance(twin["prediction"]["fault_flag"], bool), twin["prediction"]
    assert page.locator("#fault-score").inner_text() != "–"
    assert page.locator("#fault-flag").inner_text() in ("fault flagged", "no fault")
    # the 3D pack: a WebGL canvas with the cells drawn in many colours, moving (frames rendered)
    page.wait_for_function("() => window.evtwinPack && window.evtwinPack.frames > 10", timeout=15_000)
    px = _webgl_pixels(page)
    assert px["webgl"] == 1, "the 3D canvas has no WebGL context"
    assert px["lit"] > 0.15 * px["total"] and px["colours"] > 20, px
    page.check("input[name=pack-mode][value=temperature]")
    expect(page.locator("#pack-lo")).to_contain_text("°C")
    # live frames of this battery reach the page
    before = _live_count(page)
    page.wait_for_function(f"() => Number(document.getElementById('live-updates').dataset.count) > {before}",
                           timeout=20_000)
    page.check("input[name=pack-mode][value=voltage]")
    page.wait_for_timeout(500)
    _shot(page, web, "battery")
    pack = page.locator("#pack3d")
    pack.scroll_into_view_if_needed()
    page.screenshot(path=str(web.shots / "pack3d.png"), clip=pack.bounding_box())


def test_desired_state_form_round_trips(page: Page, web: WebRun) -> None:
    bid = web.batteries[1]
    page.goto(f"{web.url}/battery.html?id={bid}")
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=20_000)
    form = page.locator("#desired-form")
    form.locator("select[name=usage_profile]").select_option("commercial")
    form.locator("input[name=max_soc]").fill("80")
    form.locator("input[name=dc_share]").fill("0.5")
    # without the key the API refuses, and the page says why
    form.locator("input[name=api_key]").fill("not-the-key")
    form.locator("button[type=submit]").click()
    expect(page.locator("#desired-msg")).to_contain_text("401")
    assert httpx.get(f"{web.url}/api/batteries/{bid}/desired", timeout=10).json()["desired"] is None

    form.locator("input[name=api_key]").fill(API_KEY)
    form.locator("button[type=submit]").click()
    expect(page.locator("#desired-msg")).to_contain_text("accepted")
    view = httpx.get(f"{web.url}/api/batteries/{bid}/desired", timeout=10).json()
    assert view["desired"]["usage_profile"] == "commercial"
    assert view["desired"]["max_soc"] == 80 and view["desired"]["dc_share"] == 0.5
    # a fresh page reads it back from the API, and the simulator reports it applied
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=20_000)
    desired_row = page.locator("#desired-table tr[data-row=desired]")
    expect(desired_row).to_contain_text("commercial")
    expect(desired_row).to_contain_text("80")
    expect(page.locator("#desired-status")).to_have_attribute("data-converged", "1", timeout=60_000)
    expect(page.locator("#desired-table tr[data-row=reported]")).to_contain_text("commercial")
    _shot(page, web, "desired")


def test_topics_page_shows_offsets_lag_and_decoded_records(page: Page, web: WebRun) -> None:
    page.goto(f"{web.url}/topics.html?topic={PREDICTIONS}")
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=20_000)
    overview = httpx.get(f"{web.url}/api/topics", timeout=10).json()
    names = {t["name"] for t in overview["topics"]}
    assert PREDICTIONS in names
    expect(page.locator("#topics-table tbody tr[data-topic]")).to_have_count(len(names))
    expect(page.locator("#groups-table tbody tr[data-group]").first).to_be_visible()
    first = page.locator("#records pre.json").first
    expect(first).to_be_visible(timeout=10_000)
    assert '"battery_id"' in first.inner_text() and '"rul_cycles"' in first.inner_text()
    _shot(page, web, "topics")


def test_interactive_docs_render_offline(page: Page, web: WebRun) -> None:
    """``/docs`` draws every operation of the OpenAPI document from the vendored Swagger UI, and the
    page asks nothing of any host but the API (FastAPI's default page loads it from a CDN: blank
    on a machine without the internet, as this one is)."""
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    spec = httpx.get(f"{web.url}/openapi.json", timeout=10).json()
    operations = sum(1 for item in spec["paths"].values() for method in item
                     if method in {"get", "put", "post", "delete", "patch"})
    page.goto(f"{web.url}/docs")
    expect(page.locator(".opblock")).to_have_count(operations, timeout=20_000)
    assert page.locator(".opblock-summary-path", has_text="/api/batteries/{battery_id}/desired").count() == 2
    outside = [u for u in requested if not u.startswith(web.url) and not u.startswith("data:")]
    assert not outside, f"/docs fetched from outside the API: {outside}"
    _shot(page, web, "docs")
