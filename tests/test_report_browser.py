"""The report of a short real run, opened in headless Chromium with the network disabled.

Needs Debian's ``chromium`` at /usr/bin/chromium (or ``ATTNLAB_CHROMIUM``): these tests fail, never skip,
when it is missing, because the CI installs it.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from attnlab.report import load_attention
from attnlab.train import fit

CHROMIUM = Path(os.environ.get("ATTNLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real (short) run of the squares Transformer: encoder self-, decoder self- and cross-attention, 4 heads."""
    overrides = ["n_train=256", "n_val=64", "n_test=64", "max_epochs=2", "seed=1"]
    result = fit("squares", "transformer", overrides, run_dir=tmp_path_factory.mktemp("browser") / "run",
                 progress=False)
    assert (result.run_dir / "report.html").is_file(), "fit writes the report"
    return result.run_dir


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install it with `apt-get install chromium` "
                    "(or point ATTNLAB_CHROMIUM at a Chromium binary); the report's browser tests need it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, run_dir):
    """The report opened offline; ``page.problems`` collects console errors, page errors and network requests."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_offline(True)
    problems: list[str] = []

    def block(route):
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            problems.append(f"network request: {route.request.url}")
            route.abort()

    context.route("**/*", block)
    page = context.new_page()
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.goto((run_dir / "report.html").resolve().as_uri())
    page.wait_for_function("window.attnlabReport && window.attnlabReport.ready", timeout=30_000)
    page.problems = problems
    yield page
    context.close()


def _select(page, selector: str, value: str) -> None:
    """Choose ``value`` in a selector and wait until the heatmap shows the new choice."""
    page.select_option(selector, value)
    key = page.evaluate("['attn-sample', 'attn-layer', 'attn-head']"
                        ".map(i => document.getElementById(i).value).join('/')")
    page.wait_for_function(f"document.getElementById('attn-heatmap').dataset.rendered === '{key}'")


def _layer_value(page, layer: str) -> str:
    return page.eval_on_selector(f"#attn-layer option[data-layer='{layer}']", "o => o.value")


def test_report_opens_offline_without_errors_and_lists_self_and_cross_attention(page):
    assert page.problems == []
    for section in ("config", "metrics", "curves", "figures", "attention"):
        assert page.locator(f"section#{section}").is_visible()
    kinds = page.eval_on_selector_all("#attn-layer option", "os => os.map(o => o.dataset.kind + ' ' + o.dataset.layer)")
    assert "cross decoder.layers.1.cross_attn" in kinds and "self decoder.layers.0.self_attn" in kinds
    assert "self encoder.layers.0.self_attn" in kinds
    heads = page.eval_on_selector_all("#attn-head option", "os => os.map(o => o.value)")
    assert heads == ["mean", "0", "1", "2", "3"]
    assert page.locator("#curve-epochs .main-svg").count() > 0 and page.locator("#attn-heatmap .main-svg").count() > 0


def test_switching_head_changes_the_heatmap(page, run_dir):
    stored = load_attention(run_dir)[0].maps
    _select(page, "#attn-layer", _layer_value(page, "decoder.layers.1.cross_attn"))
    _select(page, "#attn-head", "0")
    z0 = page.evaluate("document.getElementById('attn-heatmap').data[0].z")
    shot0 = page.locator("#attn-heatmap").screenshot()
    _select(page, "#attn-head", "1")
    z1 = page.evaluate("document.getElementById('attn-heatmap').data[0].z")
    shot1 = page.locator("#attn-heatmap").screenshot()
    cross = next(m for m in stored if m.layer == "decoder.layers.1.cross_attn")
    assert z0 == cross.weights[0].tolist() and z1 == cross.weights[1].tolist()
    assert z0 != z1 and shot0 != shot1  # the data and the pixels both change
    assert page.problems == []


def test_hovered_cell_shows_the_weight_stored_in_the_run_folder(page, run_dir):
    sample = load_attention(run_dir)[1]
    _select(page, "#attn-sample", "1")
    _select(page, "#attn-layer", _layer_value(page, "decoder.layers.0.cross_attn"))
    _select(page, "#attn-head", "2")
    cross = next(m for m in sample.maps if m.layer == "decoder.layers.0.cross_attn")
    n_queries, n_keys = cross.weights.shape[1:]
    page.locator("#attn-heatmap").scroll_into_view_if_needed()  # the mouse only reaches the viewport
    box = page.locator("#attn-heatmap .nsewdrag").bounding_box()  # the plot area: heatmap cells fill it
    for q, k in ((1, 0), (0, 1)):
        x = box["x"] + (k + 0.5) / n_keys * box["width"]
        y = box["y"] + (q + 0.5) / n_queries * box["height"]  # queries top to bottom
        page.mouse.move(x, y)
        page.wait_for_function(f"document.getElementById('attn-readout').dataset.queryIndex === '{q}' && "
                               f"document.getElementById('attn-readout').dataset.keyIndex === '{k}'")
        readout = page.eval_on_selector("#attn-readout", "e => Object.assign({text: e.textContent}, e.dataset)")
        assert float(readout["weight"]) == float(cross.weights[2, q, k])  # exact: float32 kept in the page
        assert readout["query"] == cross.query_labels[q] and readout["key"] == cross.key_labels[k]
        assert cross.query_labels[q] in readout["text"] and "head 2" in readout["text"]
        assert page.locator(".hoverlayer .hovertext").count() == 1  # plotly's own tooltip too
    assert page.problems == []


def test_screenshot_of_the_report(page, tmp_path):
    path = tmp_path / "report.png"
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert width == 1200 and height > 1500 and len(data) > 50_000
