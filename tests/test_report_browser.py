"""Open the report in headless Chromium: it loads, every <img> decodes, no console errors.

Skips when Chromium or Playwright is missing, except under MODELDIFF_REQUIRE_BROWSER=1
(set by CI), where a missing browser is a failure.
"""
import os
import shutil

import numpy as np
import pytest

from tests.test_report import build

pytestmark = pytest.mark.slow  # browser: runs in the full suite, not the developer loop


CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _browser_or_skip():
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        problem, sync_playwright = f"playwright is not installed ({err})", None
    if problem is None and not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        problem = f"no Chromium at {CHROMIUM}"
    if problem:
        if os.environ.get("MODELDIFF_REQUIRE_BROWSER") == "1":
            pytest.fail(f"MODELDIFF_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(problem)
    return sync_playwright


@pytest.mark.parametrize("with_images", [True, False])
def test_report_renders_in_chromium(tmp_path, with_images):
    sync_playwright = _browser_or_skip()
    _, path = build(tmp_path, with_images=with_images)
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
                                    args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
            response = page.goto(path.resolve().as_uri(), wait_until="load")
            assert response is None or response.ok
            images = page.evaluate(
                "() => Promise.all(Array.from(document.images).map(i => i.decode().then("
                "() => [i.alt, i.complete, i.naturalWidth, i.naturalHeight], () => [i.alt, false, 0, 0])))")
            title = page.title()
        finally:
            browser.close()
    assert title == "ModelDiff report"
    assert len(images) == 6
    bad = [img for img in images if not (img[1] and img[2] > 0 and img[3] > 0)]
    assert not bad, bad
    assert not errors, errors


WIDTH, FIRST_SCREEN = 1200, 900


def _layout(path, shot_to=None):
    """Open ``path`` at 1,200 px: (first-screen grayscale screenshot, verdict/table boxes, table overflows, page width)."""
    import io

    from PIL import Image

    sync_playwright = _browser_or_skip()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
                                    args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": FIRST_SCREEN})
            page.goto(path.resolve().as_uri(), wait_until="load")
            shot = Image.open(io.BytesIO(page.screenshot(full_page=False))).convert("L")
            if shot_to:
                page.screenshot(path=str(shot_to), full_page=True)
            boxes = {sel: page.locator(sel).first.bounding_box() for sel in ("div.verdict", "table.algorithms")}
            overflow = page.evaluate(
                "() => Array.from(document.querySelectorAll('table, img')).filter(t => "
                "t.getBoundingClientRect().right > window.innerWidth + 0.5 || t.scrollWidth > t.clientWidth + 1)"
                ".map(t => t.tagName + ': ' + (t.innerText || t.alt || '').slice(0, 60))")
            width = page.evaluate("() => document.documentElement.scrollWidth")
        finally:
            browser.close()
    return shot, boxes, overflow, width


def test_verdict_first_and_nothing_overflows_at_1200px(tmp_path):
    """At 1,200 px wide: the verdict and the algorithm table lie inside the first 900 px and are drawn
    (dark text pixels in the screenshot); no table or figure is wider than the window."""
    from tests.test_report_verdict import build_full

    path = build_full(tmp_path)
    shot, boxes, overflow, width = _layout(path)
    assert shot.size == (WIDTH, FIRST_SCREEN)
    for sel, box in boxes.items():
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= FIRST_SCREEN, (sel, box)
        crop = np.asarray(shot.crop((int(box["x"]), int(box["y"]), int(box["x"] + box["width"]),
                                     int(box["y"] + box["height"]))))
        assert (crop < 100).mean() > 0.01, sel              # text is drawn there
    assert not overflow, overflow
    assert width <= WIDTH


def test_non_image_report_fits_1200px(tmp_path):
    from tests.test_report import build_tabular

    path = build_tabular(tmp_path)
    _, _, overflow, width = _layout(path)
    assert not overflow, overflow
    assert width <= WIDTH
