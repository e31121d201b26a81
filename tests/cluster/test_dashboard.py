"""The dashboard in a real browser: headless Chromium (Debian's chromium and
chromium-driver, which .ci/run installs) opens the dashboard of a running 3-node cluster
while a graph runs, and reads the page as a person would.

The graph's first tasks wait on a gate (a file the test creates), so what the page shows
while it runs is not a race: tasks running and waiting, then every count at its total.
Set PLAIT_SCREENSHOTS=DIR to save a screenshot of each page there (docs/ holds them).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

import plait
from tests.cluster.gates import wait_exit
from tests.conftest import shut_down_checked

webdriver = pytest.importorskip("selenium.webdriver")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.cluster

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
PAGE_TIMEOUT = 30.0            # the page polls once a second; a node's death shows in ~1 s
SHOTS = os.environ.get("PLAIT_SCREENSHOTS")
BLOCKS = 6


@plait.remote
def block(i: int, gate: str) -> np.ndarray:
    """A 2 MiB array, once the gate opens (TimeoutError after 30 s: no test hangs)."""
    deadline = time.monotonic() + 30
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(gate)
        time.sleep(0.005)
    return np.full(1 << 18, float(i))


@plait.remote
def total(array: np.ndarray) -> float:
    return float(array.sum())


@plait.remote(max_retries=0)
def broken() -> None:
    raise ValueError("bad input for the dashboard")


@pytest.fixture(scope="module")
def dashboard():
    if not os.path.exists(CHROMEDRIVER):
        pytest.skip("chromium-driver is not installed (apt-get install chromium chromium-driver)")
    plait.shutdown()
    info = plait.init(num_nodes=3, num_workers=1, store_memory="64MiB", dashboard=True)
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    try:
        assert info.dashboard_url and f"dashboard: {info.dashboard_url}" in repr(info)
        yield browser, info.dashboard_url
    finally:
        browser.quit()
        shut_down_checked()


@pytest.fixture
def gate(tmp_path):
    """A gate's path; opened at teardown too, so a failing test leaves no task waiting."""
    path = str(tmp_path / "gate")
    yield path
    open(path, "a").close()


def until(browser, read, timeout: float = PAGE_TIMEOUT):
    """What ``read(browser)`` returns once it is truthy (the page redraws once a second)."""
    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(
        lambda b: read(b), message=f"the page never showed {read.__doc__ or read}")


def shown(browser, selector: str, *attributes: str) -> list[dict]:
    """The elements ``selector`` finds, read at one instant (the page redraws them once a
    second, so elements found earlier go stale): each one's text, its cells' texts, its
    class and the ``attributes`` asked for."""
    return browser.execute_script("""
        var selector = arguments[0], attributes = arguments[1];
        return Array.from(document.querySelectorAll(selector)).map(function (e) {
          var seen = {text: e.textContent, cls: e.getAttribute("class") || "",
                      cells: Array.from(e.querySelectorAll("td")).map(function (td) {
                        return td.textContent; }),
                      pre: Array.from(e.querySelectorAll("pre")).map(function (p) {
                        return p.textContent; }).join("")};
          attributes.forEach(function (a) { seen[a] = e.getAttribute(a); });
          return seen;
        });""", selector, list(attributes))


def opened(dashboard) -> webdriver.Chrome:
    """The browser on the dashboard's page, opened by this test (so it runs alone too)."""
    browser, url = dashboard
    browser.get(url)
    return browser


def tab(browser, name: str) -> None:
    browser.find_element(By.CSS_SELECTOR, f'nav a[data-tab="{name}"]').click()


def shot(browser, name: str) -> None:
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        browser.save_screenshot(os.path.join(SHOTS, f"dashboard-{name}.png"))


def progress(browser, function: str) -> dict[str, int] | None:
    """The Run page's row for ``function``, read from its cells."""
    rows = shown(browser, f'tr.progress-row[data-function="{function}"]')
    if not rows:
        return None
    names = ("waiting", "running", "done", "failed", "retried", "total")
    return dict(zip(names, map(int, rows[0]["cells"][2:8]), strict=True))


def plan_states(browser) -> list[str]:
    return [g["cls"].rsplit("state-", 1)[-1] if "state-" in g["cls"] else ""
            for g in shown(browser, "#plan g.plait-vertex.plait-task")]


def test_without_the_token_the_page_is_refused(dashboard):
    browser, url = dashboard
    base = url.split("/?", 1)[0]
    browser.get(base + "/")
    assert "needs its token" in shown(browser, "body")[0]["text"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(base + "/metrics", timeout=10)
    refused.value.close()
    assert refused.value.code == 403


def test_the_cluster_page_lists_every_node_with_its_store_bar(dashboard):
    browser, url = dashboard
    browser.get(url)                                 # the token, traded for a cookie
    assert "token=" not in browser.current_url
    rows = until(browser, lambda b: len(r := shown(b, "tr.node-row", "data-node")) == 3 and r)
    assert [r["data-node"] for r in rows] == ["node-0", "node-1", "node-2"]
    assert "(head)" in rows[0]["text"] and "1 idle" in rows[1]["text"]
    assert all(" of " in r["cells"][3] and "objects" in r["cells"][3] for r in rows)
    assert len(shown(browser, "tr.node-row .bar span.free")) == 3


def test_progress_grows_to_the_total_and_the_plan_is_coloured_as_tasks_run(dashboard, gate):
    browser = opened(dashboard)
    kept = [plait.put(np.ones(1 << 20)) for _ in range(2)]       # 8 MiB each, for Objects
    refs = [total.remote(block.remote(i, gate)) for i in range(BLOCKS)]
    tab(browser, "run")
    running = until(browser, lambda b: (row := progress(b, "block")) and row["running"] > 0
                    and row)
    assert running["done"] == 0 and running["total"] == BLOCKS
    assert running["running"] + running["waiting"] == BLOCKS
    tab(browser, "plan")
    states = until(browser, lambda b: "running" in (s := plan_states(b)) and s)
    assert len(states) == 2 * BLOCKS and "done" not in states
    shot(browser, "plan")
    tab(browser, "cluster")
    shot(browser, "cluster")
    tab(browser, "run")
    shot(browser, "run")
    open(gate, "w").close()
    assert plait.get(refs, timeout=60) == [float(i * (1 << 18)) for i in range(BLOCKS)]
    for function in ("block", "total"):
        row = until(browser, lambda b, f=function: (r := progress(b, f)) and r["done"] == BLOCKS
                    and r)
        assert row == {"waiting": 0, "running": 0, "done": BLOCKS, "failed": 0, "retried": 0,
                       "total": BLOCKS}
    shot(browser, "run-done")
    tab(browser, "plan")
    assert until(browser, lambda b: set(plan_states(b)) == {"done"})
    tab(browser, "objects")
    rows = until(browser, lambda b: shown(b, "tr.object-row", "data-object"))
    assert {r["data-object"] for r in rows} >= {ref.id for ref in kept}
    assert rows[0]["cells"][1] == "8.0 MiB"
    shot(browser, "objects")


def test_a_failed_task_shows_its_remote_traceback_on_the_events_page(dashboard):
    browser = opened(dashboard)
    with pytest.raises(ValueError):
        plait.get(broken.remote(), timeout=60)
    tab(browser, "events")
    error = until(browser, lambda b: shown(b, "#events li.error"))[0]
    assert "broken failed on node-" in error["text"]
    assert "ValueError: bad input for the dashboard" in error["pre"]


@plait.remote
class Tally:
    def __init__(self) -> None:
        self.count = 0

    def add(self) -> int:
        self.count += 1
        return self.count


def test_an_actor_killed_from_the_cluster_page_is_dead_for_good(dashboard):
    browser = opened(dashboard)
    tally = Tally.options(name="tally").remote()
    assert plait.get(tally.add.remote(), timeout=60) == 1
    tab(browser, "cluster")
    row = until(browser, lambda b: shown(b, 'tr.actor-row[data-state="alive"]'))[0]
    assert row["cells"][1:3] == ["Tally", "tally"]
    browser.execute_script("window.confirm = function () { return true; };")
    browser.find_element(By.CSS_SELECTOR, "tr.actor-row button.kill").click()
    until(browser, lambda b: shown(b, 'tr.actor-row[data-state="dead"]'))
    assert not shown(browser, "tr.actor-row button.kill")
    shot(browser, "actors")
    with pytest.raises(plait.exceptions.ActorDiedError, match="dashboard"):
        plait.get(tally.add.remote(), timeout=60)


def test_a_killed_node_is_shown_dead_with_why(dashboard):
    browser = opened(dashboard)
    (victim,) = [n for n in plait.nodes() if n.id == "node-2"]
    os.kill(victim.pid, signal.SIGKILL)
    assert wait_exit(victim.pid)
    tab(browser, "cluster")
    dead = until(browser, lambda b: shown(b, 'tr.node-row.dead[data-node="node-2"]'))[0]
    assert "died" in dead["text"] and dead["cells"][0] == "node-2"
    assert [r["data-node"] for r in shown(browser, "tr.node-row:not(.dead)", "data-node")] \
        == ["node-0", "node-1"]
    tab(browser, "events")
    assert until(browser, lambda b: shown(b, "#events li.node-dead"))
    shot(browser, "events")
