"""The dashboard in a real browser (Debian's chromium driven by playwright): every page loads
from a live node and shows that node, an actor this test created and a job that finished; the
test saves a screenshot of each page (into docs/images/ with ZRAY_DOCS_SCREENSHOTS=1)."""
import os
import shutil
import time

import pytest

CHROMIUM = "/usr/bin/chromium"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")]


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


def _continue_breakpoint():
    """Attach to the one paused breakpoint as `zray debug` does and continue it."""
    import socket
    from zray.util.debug.registry import list_breakpoints
    (bp,) = list_breakpoints()
    with socket.create_connection((bp["host"], bp["port"]), timeout=30) as conn:
        seen = b""
        while b"(Pdb)" not in seen:
            chunk = conn.recv(4096)
            assert chunk, seen
            seen += chunk
        conn.sendall(b"c\n")
        while conn.recv(4096):
            pass


def _shot(page, tmp_path, name):
    path = tmp_path / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size > 5000
    if os.environ.get("ZRAY_DOCS_SCREENSHOTS") == "1":
        os.makedirs(os.path.join(REPO, "docs", "images"), exist_ok=True)
        shutil.copy(path, os.path.join(REPO, "docs", "images", path.name))


def test_every_page_in_chromium(zray_cluster, browser, tmp_path):
    zray = zray_cluster(num_cpus=2)
    from zray.job_submission import JobSubmissionClient
    from zray.util.placement_group import placement_group
    ctx = zray.api._context_info()
    url, node_id = ctx["dashboard_url"], ctx["node_id"]

    @zray.remote
    class DashboardProbe:
        def hello(self):
            return "hi"

    probe = DashboardProbe.options(name="probe_for_the_browser").remote()
    assert zray.get(probe.hello.remote()) == "hi"

    @zray.remote
    def square(x):
        time.sleep(0.01)
        return x * x

    assert sum(zray.get([square.remote(i) for i in range(30)])) == sum(i * i for i in range(30))
    big = zray.put(b"x" * (2 << 20))       # an object in the store
    pg = placement_group([{"CPU": 0.5}], name="browser_pg")
    zray.get(pg.ready(), timeout=60)
    client = JobSubmissionClient(url)
    sid = client.submit_job(
        entrypoint="python -c \"import zray; zray.init(); "
                   "print('output-of-the-browser-job', zray.get(zray.remote(lambda: 7).remote()))\"",
        submission_id="browser_job")
    deadline = time.monotonic() + 90
    while not client.get_job_status(sid).is_terminal() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert str(client.get_job_status(sid)) == "SUCCEEDED"

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(url + "/#cluster")
    page.wait_for_selector(f"[data-testid=this-node]:has-text('{node_id}')", timeout=30000)
    assert node_id in page.inner_text("[data-testid=nodes-table]")
    assert "ALIVE" in page.inner_text("[data-testid=nodes-table]")
    _shot(page, tmp_path, "cluster")

    page.goto(url + "/#jobs")
    page.wait_for_selector("[data-testid=jobs-table] >> text=browser_job", timeout=30000)
    assert "SUCCEEDED" in page.inner_text("[data-testid=jobs-table]")
    _shot(page, tmp_path, "jobs")
    page.click("[data-testid=jobs-table] >> text=browser_job")
    page.wait_for_selector("[data-testid=job-logs] >> text=output-of-the-browser-job 7", timeout=30000)
    page.wait_for_selector("#jobtasks >> text=FINISHED", timeout=30000)     # the job's own task
    _shot(page, tmp_path, "job")

    page.goto(url + "/#actors")
    page.wait_for_selector("[data-testid=actors-table] >> text=DashboardProbe", timeout=30000)
    assert "probe_for_the_browser" in page.inner_text("[data-testid=actors-table]")
    page.fill("#actors-q", "no-such-actor-anywhere")
    page.wait_for_selector("[data-testid=actors-table] >> text=nothing to show", timeout=30000)
    page.fill("#actors-q", "probe_for")
    page.wait_for_selector("[data-testid=actors-table] >> text=DashboardProbe", timeout=30000)
    _shot(page, tmp_path, "actors")

    page.goto(url + "/#tasks")
    page.wait_for_selector("[data-testid=tasks-table] >> text=FINISHED", timeout=30000)
    page.wait_for_selector(".chip >> text=FINISHED", timeout=30000)
    assert page.eval_on_selector("#timeline", "c => c.height") > 0
    _shot(page, tmp_path, "tasks")

    page.goto(url + "/#objects")
    page.wait_for_selector("#store-cards >> text=store used", timeout=30000)
    _shot(page, tmp_path, "objects")

    page.goto(url + "/#placement_groups")
    page.wait_for_selector("[data-testid=placement_groups-table] >> text=browser_pg", timeout=30000)
    _shot(page, tmp_path, "placement-groups")

    page.goto(url + "/#serve")
    page.wait_for_selector("[data-testid=serve-none]", timeout=60000)

    page.goto(url + "/#logs")
    page.wait_for_selector("[data-testid=log-files] >> text=dashboard.log", timeout=30000)
    page.click("[data-testid=log-files] >> text=dashboard.log")
    page.wait_for_function("document.getElementById('logtext').textContent.length > 0",
                           timeout=30000)
    _shot(page, tmp_path, "logs")

    page.goto(url + "/#metrics")
    page.wait_for_function(
        "fetch('/api/metrics/history').then(r => r.json()).then(d => d.samples.length >= 2)",
        timeout=30000)
    page.wait_for_timeout(2500)     # the next refresh draws the lines
    _shot(page, tmp_path, "metrics")

    @zray.remote
    def waits_for_you():
        breakpoint()
        return "released"

    paused = waits_for_you.remote()
    page.goto(url + "/#breakpoints")
    page.wait_for_selector("[data-testid=breakpoints-table] >> text=waits_for_you", timeout=60000)
    _shot(page, tmp_path, "breakpoints")
    _continue_breakpoint()
    assert zray.get(paused, timeout=60) == "released"
    assert errors == []
    del big


def test_actor_search_fetches_as_the_user_types(zray_cluster, browser):
    """Typing in the actors page's search box draws the matching row from the search's own
    request, not from the page's timed refresh: the test stops that refresh (the tab says it is
    hidden) before typing, so only the search can bring the row."""
    zray = zray_cluster(num_cpus=2)
    url = zray.api._context_info()["dashboard_url"]

    @zray.remote
    class Searchable:
        def ping(self):
            return 1

    handles = [Searchable.options(name=f"searchable-{i}").remote() for i in range(3)]
    assert zray.get([h.ping.remote() for h in handles]) == [1, 1, 1]

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url + "/#actors")
    page.wait_for_selector("[data-testid=actors-table] >> text=searchable-0", timeout=30000)
    page.evaluate("Object.defineProperty(document, 'visibilityState', {get: () => 'hidden'})")
    page.click("#actors-q")
    page.keyboard.type("searchable-2", delay=20)
    page.wait_for_selector("#actors-table[data-q='searchable-2']", timeout=30000)
    table = page.inner_text("[data-testid=actors-table]")
    assert "searchable-2" in table and "searchable-0" not in table, table
    # A further keystroke replaces the answer (the older request, if still in flight, is
    # aborted and never drawn over the newer one).
    page.keyboard.press("Backspace")
    page.keyboard.type("1")
    page.wait_for_selector("#actors-table[data-q='searchable-1']", timeout=30000)
    table = page.inner_text("[data-testid=actors-table]")
    assert "searchable-1" in table and "searchable-2" not in table, table
    page.fill("#actors-q", "")
    page.wait_for_selector("#actors-table[data-q=''] >> text=searchable-0", timeout=30000)
    assert "searchable-2" in page.inner_text("[data-testid=actors-table]")
    assert errors == []
