"""The dashboard in a real browser: Streamlit on a free localhost port, every page opened in headless Chromium
(Debian's, driven by Playwright), no exception box anywhere, one interaction, screenshots saved to
$LAB_SCREENSHOTS (default build/screenshots)."""
import json
import os
import time
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} "
                                "(apt-get install -y chromium; .ci/run does this)")

import lab  # noqa: E402
from dashboard_server import dashboard  # noqa: E402

REPO = Path(__file__).parents[2]
PAGES = {"": "How do transformers learn in context?", "runs": "Runs", "icl_curve": "In-context curve",
         "inside": "Inside the model", "algorithm": "Which algorithm?", "boolean": "Boolean functions",
         "graph_search": "Graph search",
         "attention_svm": "Attention as an SVM", "sweeps": "Sweeps",
         "representation": "Learning with a representation", "tour": "Tour"}  # the tour last: the test steps it


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser") / "runs"
    lab.train("tiny-linreg", ["train.steps=40", "model.d_model=16", "model.n_layers=2"], out=root / "small",
              quiet=True)
    lab.train("graph-search", ["task.n_vertices=7", "train.steps=20", "model.d_model=16", "model.n_layers=2"],
              out=root / "graph", quiet=True)  # listed before "small", which stays the default run
    with dashboard(root) as (base, _, _):
        yield base


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()


def _settle(page, title: str, quiet_s: float = 2.0, timeout_s: float = 240.0) -> None:
    """Wait for the page's title, then until Streamlit's running indicator has been gone for `quiet_s`."""
    page.get_by_role("heading", name=title).first.wait_for(timeout=timeout_s * 1000)
    deadline, quiet_since = time.time() + timeout_s, time.time()
    while time.time() < deadline:
        if page.locator('[data-testid="stStatusWidget"]').count():
            quiet_since = time.time()
        elif time.time() - quiet_since >= quiet_s:
            return
        page.wait_for_timeout(250)
    pytest.fail(f"page {title!r} was still running after {timeout_s:.0f} s")


def _shots() -> Path:
    folder = Path(os.environ.get("LAB_SCREENSHOTS", REPO / "build" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_every_page_opens_without_an_exception_and_the_tour_steps(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    for path, title in PAGES.items():
        page.goto(f"{server}/{path}")
        _settle(page, title)
        assert page.locator('[data-testid="stException"]').count() == 0, f"exception on /{path}"
        assert page.get_by_text("Page not found").count() == 0, f"/{path} is not a page"
        assert page.locator('[data-testid="stAppDeployButton"]').count() == 0, "a Deploy button on a local lab"
        assert page.get_by_role("button", name="Deploy").count() == 0
        page.screenshot(path=str(_shots() / f"{path or 'home'}.png"), full_page=True)
    page.goto(f"{server}/runs?run=small")  # compared with its zoo reference: what their configs set differently
    _settle(page, "Runs")
    assert page.get_by_text("What their configs set differently").count() == 1
    page.screenshot(path=str(_shots() / "runs-compare.png"), full_page=True)
    page.goto(f"{server}/tour")
    _settle(page, "Tour")
    # one interaction: the tour's Next button shows the second demo
    assert page.get_by_text("2. One layer of linear attention").count() == 0
    page.get_by_role("button", name="Next").click()
    page.get_by_text("2. One layer of linear attention").first.wait_for(timeout=30_000)
    _settle(page, "Tour")
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(_shots() / "tour-next.png"), full_page=True)
    page.close()


def test_graph_page_opens_the_newest_graph_run_and_others_open_theirs(server, browser):
    """Each kind of page opens a run of its own kind: the graph page the user's graph run, the In-context page the
    regression run picked there before, though the graph run is newer."""
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.goto(f"{server}/graph_search")
    _settle(page, "Graph search")
    page.get_by_text("Model's next vertex").first.wait_for(timeout=60_000)
    _settle(page, "Graph search")
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stImage"]').count() >= 2  # the graph and the accuracy-by-lookahead figure
    page.screenshot(path=str(_shots() / "graph_search-run.png"), full_page=True)
    page.get_by_role("link", name="In-context curve").first.click()  # in the same session, as a user moves on
    _settle(page, "In-context curve")
    assert page.get_by_text("trains graph_search").count() == 0
    picker = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first
    assert picker.locator("input").input_value() == "small"
    page.close()


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory):
    """`lab dashboard` on a fresh install: an empty run store, only the models shipped with the lab."""
    with dashboard(tmp_path_factory.mktemp("fresh") / "runs") as (base, _, _):
        yield base


CHART = '[data-testid="stVegaLiteChart"], [data-testid="stImage"]'  # an interactive chart or a figure


# What each page shows from the zoo on a fresh install (tests/probes/test_zoo.py checks that the zoo is complete)
NEEDS = {"": ["garg-curve"], "runs": ["garg-curve"], "icl_curve": ["garg-curve"], "inside": ["garg-curve"],
         "algorithm": ["garg-curve"], "boolean": ["bhattamishra-table"], "graph_search": ["saparov-distributions"],
         "attention_svm": ["svm-convergence", "svm-rank", "scan-and-snap"], "sweeps": ["akyurek-depth"],
         "representation": ["guo-representation"], "tour": ["garg-curve"]}


def test_on_a_fresh_install_every_page_shows_a_chart_of_a_shipped_model(fresh_server, browser):
    """With no run of the user's own, every page opens on the zoo and shows a chart; how long each took from opening
    the page is written to first_chart_s.json beside the screenshots (measured, not asserted: see the issue note)."""
    from lab import zoo

    assert set(NEEDS) == set(PAGES)
    assert {name for needs in NEEDS.values() for name in needs} <= set(zoo.manifest()["experiments"])
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.goto(fresh_server)  # the server's first page load (imports, caches) is not what a page costs
    _settle(page, PAGES[""])
    seconds = {}
    for path, title in PAGES.items():
        t0 = time.time()
        page.goto(f"{fresh_server}/{path}")
        page.locator(CHART).first.wait_for(timeout=120_000)
        seconds[path or "home"] = round(time.time() - t0, 1)
        _settle(page, title)
        assert page.get_by_text("No run selected").count() == 0, f"/{path}"
        assert page.locator('[data-testid="stException"]').count() == 0, f"exception on /{path}"
        assert page.get_by_text("Not computed yet").count() == 0, f"/{path} shows nothing computed"
        page.screenshot(path=str(_shots() / f"fresh-{path or 'home'}.png"), full_page=True)
    (_shots() / "first_chart_s.json").write_text(json.dumps(seconds, indent=1))
    page.close()


def _hover_until_tooltip(page, chart, needle: str) -> tuple[str, float, float]:
    """Move the mouse over a grid of points of `chart` until Vega's tooltip shows text containing `needle`;
    returns the tooltip's text and where the mouse is."""
    box = chart.bounding_box()
    for fy in (0.5, 0.4, 0.6, 0.3, 0.7):
        for fx in (0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8):
            x, y = box["x"] + fx * box["width"], box["y"] + fy * box["height"]
            page.mouse.move(x, y)
            page.wait_for_timeout(150)
            tip = page.locator("#vg-tooltip-element.visible")
            if tip.count() and needle in tip.inner_text():
                return tip.inner_text(), x, y
    pytest.fail(f"no tooltip with {needle!r} over the chart")


def test_interactive_charts_show_values_on_hover_and_a_click_picks_the_example(server, browser):
    """The attention chart: hovering a cell shows its query, key and weight; clicking it picks the key token's
    example for editing. The ICL curve: hovering a point shows its error."""
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.goto(f"{server}/inside")
    _settle(page, "Inside the model")
    pattern = page.locator('[data-testid="stVegaLiteChart"]').first
    pattern.wait_for(timeout=60_000)
    pattern.scroll_into_view_if_needed()
    text, x, y = _hover_until_tooltip(page, pattern, "attention")
    assert "query" in text and "layer" in text, text
    page.screenshot(path=str(_shots() / "inside-tooltip.png"))
    key = text.split("key")[1].split()[0]  # the key token under the mouse, e.g. "y2"
    example = min(int(key[1:]), 10)  # tiny-linreg: 11 points, examples 1..10 can be edited
    page.mouse.click(x, y)
    picker = page.locator('[data-testid="stSelectbox"]').filter(has_text="Example to edit")
    deadline = time.time() + 60
    while picker.locator("input").input_value() != f"example {example}" and time.time() < deadline:
        page.wait_for_timeout(250)
    assert picker.locator("input").input_value() == f"example {example}", key
    _settle(page, "Inside the model")
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(_shots() / "inside-picked.png"), full_page=True)
    page.goto(f"{server}/icl_curve")
    _settle(page, "In-context curve")
    curve = page.locator('[data-testid="stVegaLiteChart"]').first
    curve.scroll_into_view_if_needed()
    text, _, _ = _hover_until_tooltip(page, curve, "error")
    assert "predictor" in text and "k" in text, text
    page.close()


def _picked_run(page) -> str:
    return page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.locator("input").input_value()


def test_a_views_run_is_in_its_url_so_a_shared_link_opens_the_same_view(server, browser):
    """The page writes its run and its settings into the URL; that URL opened in a new browser (a link a teacher
    shares) opens the same run, a zoo model included, with the same settings; a link naming no run, or a malformed
    or huge query string, opens the page's default with one line, never an exception."""
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(f"{server}/icl_curve")
    _settle(page, "In-context curve")
    assert _picked_run(page) == "small" and "run=small" in page.url, page.url
    page.close()
    shared = browser.new_page(viewport={"width": 1400, "height": 1600})  # a new session, as another user's
    shared.goto(f"{server}/icl_curve?run=garg-curve/linreg")
    _settle(shared, "In-context curve")
    assert _picked_run(shared) == "garg-curve/linreg"
    assert shared.locator('[data-testid="stException"]').count() == 0
    shared.screenshot(path=str(_shots() / "icl_curve-from-link.png"), full_page=True)
    shared.goto(f"{server}/icl_curve?run=small&d_active=3&x_scale=2.0&n_prompts=256")  # the sliders too
    _settle(shared, "In-context curve")
    assert shared.get_by_text("Model error at k = 3").count() == 1
    assert "x_scale=2.0" in shared.url and "n_prompts=256" in shared.url and "d_active=3" in shared.url
    shared.screenshot(path=str(_shots() / "icl_curve-sliders-from-link.png"), full_page=True)
    for query in ("run=..%2F..%2Fetc%2Fpasswd", "run=%ff%fe%00&run=&member=-1", "member=99999999999&run=small",
                  "run=" + "A" * 20000, "%%%&&&==&run", "run=small&member=abc&" + "x=1&" * 500,
                  "run=small&d_active=999&noise=nan&x_scale=abc&n_prompts=-1&x_cov=" + "z" * 5000,
                  "run=small&d_active=inf&noise=1e308&w_scale=%00"):
        shared.goto(f"{server}/icl_curve?{query}")
        _settle(shared, "In-context curve")
        assert shared.locator('[data-testid="stException"]').count() == 0, query[:80]
        assert _picked_run(shared) in ("small", "garg-curve/linreg"), query[:80]
        if "..%2F" in query or "A" * 100 in query:
            assert shared.get_by_text("The link names no run here").count() == 1, query[:80]
    shared.close()
