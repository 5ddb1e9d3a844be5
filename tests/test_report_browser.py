"""The report of a short real run, opened in headless Chromium with the network disabled.

Needs Debian's ``chromium`` at /usr/bin/chromium (or ``ATTNLAB_CHROMIUM``): these tests fail, never skip,
when it is missing, because the CI installs it.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from xml.etree import ElementTree

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
        if route.request.url.startswith(("file:", "data:", "blob:")):
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
    _wait_rendered(page)


def _wait_rendered(page) -> None:
    key = page.evaluate("['attn-sample', 'attn-layer', 'attn-head']"
                        ".map(i => document.getElementById(i).value).join('/')")
    page.wait_for_function(f"document.getElementById('attn-heatmap').dataset.rendered === '{key}'")


def _layer_value(page, layer: str) -> str:
    return page.eval_on_selector(f"#attn-layer option[data-layer='{layer}']", "o => o.value")


def _map(run_dir: Path, sample: int, layer: str):
    return next(m for m in load_attention(run_dir)[sample].maps if m.layer == layer)


def test_report_opens_offline_without_errors_and_lists_layers_by_role(page):
    assert page.problems == []
    for section in ("results", "figures", "attention", "curves", "config"):
        assert page.locator(f"section#{section}").is_visible()
    options = page.eval_on_selector_all(
        "#attn-layer option", "os => os.map(o => [o.dataset.kind, o.dataset.layer, o.dataset.role])")
    assert ["cross", "decoder.layers.1.cross_attn", "Decoder cross-attention, layer 2"] in options
    assert ["self", "decoder.layers.0.self_attn", "Decoder self-attention, layer 1"] in options
    assert ["self", "encoder.layers.0.self_attn", "Encoder self-attention, layer 1"] in options
    heads = page.eval_on_selector_all("#attn-head option", "os => os.map(o => o.value + ' ' + o.textContent)")
    assert heads == ["mean mean of 4 heads", "1 head 1", "2 head 2", "3 head 3", "4 head 4"]  # heads from 1
    assert page.locator("#curve-epochs svg polyline").count() == 2  # train and validation loss
    assert page.locator("#curve-steps svg polyline").count() == 1
    assert page.eval_on_selector("#attn-heatmap canvas", "c => c.width * c.height") > 0


def test_first_screen_holds_the_headline_metric(page, run_dir):
    mse = json.loads((run_dir / "metrics.json").read_text())["test"]["mse"]
    card = page.locator("#headline .card[data-metric='mse']")
    box = card.bounding_box()
    assert card.is_visible() and box["y"] + box["height"] <= 900  # inside the 1200x900 viewport, no scrolling
    assert card.locator(".value").inner_text() == f"{mse:.4g}" and "lower is better" in card.inner_text()


def test_explorer_opens_on_the_example_the_figures_draw(page, run_dir):
    saved = json.loads((run_dir / "attention.json").read_text())["samples"]
    drawn = next(i for i, s in enumerate(saved) if s["in_figures"])
    assert page.eval_on_selector("#attn-sample", "s => s.value") == str(drawn)
    shown = page.eval_on_selector("#attn-sample", "s => s.selectedOptions[0].text")
    assert saved[drawn]["title"] in shown and "(drawn in the figures)" in shown
    figures = page.locator("figure[data-name='squares_alphas.png']")
    assert figures.count() == 1  # the figure whose first panels are these squares


def test_switching_head_changes_the_heatmap(page, run_dir):
    cross = _map(run_dir, 0, "decoder.layers.1.cross_attn")
    _select(page, "#attn-sample", "0")
    _select(page, "#attn-layer", _layer_value(page, "decoder.layers.1.cross_attn"))
    _select(page, "#attn-head", "1")
    z1 = page.evaluate(f"attnlabReport.matrix(0, {_layer_value(page, cross.layer)}, 1)")
    shot1 = page.locator("#attn-heatmap canvas").screenshot()
    _select(page, "#attn-head", "2")
    z2 = page.evaluate(f"attnlabReport.matrix(0, {_layer_value(page, cross.layer)}, 2)")
    shot2 = page.locator("#attn-heatmap canvas").screenshot()
    assert z1 == cross.weights[0].flatten().tolist() and z2 == cross.weights[1].flatten().tolist()  # head 1 = [0]
    assert z1 != z2 and shot1 != shot2  # the data and the pixels both change
    assert page.problems == []


def test_hovered_cell_shows_the_weight_stored_in_the_run_folder(page, run_dir):
    cross = _map(run_dir, 1, "decoder.layers.0.cross_attn")
    _select(page, "#attn-sample", "1")
    _select(page, "#attn-layer", _layer_value(page, cross.layer))
    _select(page, "#attn-head", "3")
    page.locator("#attn-heatmap").scroll_into_view_if_needed()  # the mouse only reaches the viewport
    for q, k in ((1, 0), (0, 1)):
        at = page.evaluate(f"attnlabReport.cellCenter({q}, {k})")
        page.mouse.move(at["x"], at["y"])
        page.wait_for_function(f"document.getElementById('attn-readout').dataset.queryIndex === '{q}' && "
                               f"document.getElementById('attn-readout').dataset.keyIndex === '{k}'")
        readout = page.eval_on_selector("#attn-readout", "e => Object.assign({text: e.textContent}, e.dataset)")
        assert float(readout["weight"]) == float(cross.weights[2, q, k])  # exact: float32 kept in the page
        assert readout["query"] == cross.query_labels[q] and readout["key"] == cross.key_labels[k]
        assert cross.query_labels[q] in readout["text"] and "head 3" in readout["text"]
        assert page.locator("#attn-heatmap .tooltip").is_visible()
    assert page.problems == []


def test_model_view_shows_every_layer_and_head_and_opens_one_in_the_explorer(page, run_dir):
    sample = load_attention(run_dir)[0]
    _select(page, "#attn-sample", "0")
    thumbs = page.eval_on_selector_all("#model-view .thumb", "ts => ts.map(t => t.dataset.map + '/' + t.dataset.head)")
    expected = [f"{i}/{h}" for i, m in enumerate(sample.maps)
                for h in [str(h + 1) for h in range(m.weights.shape[0])] + (["mean"] if m.weights.shape[0] > 1 else [])]
    assert thumbs == expected  # every layer x head, plus the mean
    index = next(i for i, m in enumerate(sample.maps) if m.layer == "decoder.layers.1.cross_attn")
    page.click(f"#model-view .thumb[data-map='{index}'][data-head='3']")
    _wait_rendered(page)
    layer = page.eval_on_selector("#attn-layer", "s => s.selectedOptions[0].dataset.layer")
    assert layer == "decoder.layers.1.cross_attn"
    assert page.eval_on_selector("#attn-head", "s => s.value") == "3"
    assert page.locator(f"#model-view .thumb.current[data-map='{index}'][data-head='3']").count() == 1
    assert page.problems == []


def _download(page, button: str, tmp_path: Path) -> Path:
    with page.expect_download() as info:
        page.click(button)
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    return path


def test_png_export_is_the_current_map_at_its_size(page, run_dir, tmp_path):
    from PIL import Image

    cross = _map(run_dir, 0, "decoder.layers.1.cross_attn")
    _select(page, "#attn-sample", "0")
    _select(page, "#attn-layer", _layer_value(page, cross.layer))
    _select(page, "#attn-head", "2")
    path = _download(page, "#attn-export-png", tmp_path)
    info = page.evaluate("attnlabReport.lastExport")
    image = Image.open(path).convert("RGB")
    assert path.suffix == ".png" and "head2" in path.name and image.size == (info["width"], info["height"])
    vmax = float(page.eval_on_selector("#attn-heatmap", "e => e.dataset.vmax"))
    for q in range(cross.weights.shape[1]):
        for k in range(cross.weights.shape[2]):
            x = int((info["left"] + (k + 0.5) * info["cell"]) * info["ratio"])
            y = int((info["top"] + (q + 0.5) * info["cell"]) * info["ratio"])
            expected = page.evaluate(f"attnlabReport.colour({float(cross.weights[1, q, k])} / {vmax})")
            assert max(abs(a - b) for a, b in zip(image.getpixel((x, y)), expected, strict=True)) <= 2
    assert page.problems == []


def test_svg_export_holds_every_weight(page, run_dir, tmp_path):
    enc = _map(run_dir, 0, "encoder.layers.1.self_attn")
    _select(page, "#attn-sample", "0")
    _select(page, "#attn-layer", _layer_value(page, enc.layer))
    _select(page, "#attn-head", "4")
    path = _download(page, "#attn-export-svg", tmp_path)
    root = ElementTree.parse(path).getroot()
    cells = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if "data-weight" in r.attrib]
    assert len(cells) == enc.weights.shape[1] * enc.weights.shape[2]
    for r in cells:
        assert float(r.attrib["data-weight"]) == float(enc.weights[3, int(r.attrib["data-q"]), int(r.attrib["data-k"])])
    assert any("Encoder self-attention, layer 2, head 4" in (t.text or "") for t in root.iter("{http://www.w3.org/2000/svg}text"))


def test_screenshot_of_the_report(page, tmp_path):
    path = tmp_path / "report.png"
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert width == 1200 and height > 1500 and len(data) > 50_000
