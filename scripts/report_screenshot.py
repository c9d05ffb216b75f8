"""Screenshot a report in headless Chromium at 1,200 px wide: the whole page and its first 900 px.

    python scripts/report_screenshot.py runs/sgd_noise/report_a_minus_b/report.html shots/digits.png

Prints where the verdict sits and any table or figure wider than the window (none expected).
"""
import argparse
import shutil
from pathlib import Path

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("out", type=Path, help="PNG of the whole page; OUT stem + _first900.png: the first screen")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=ARGS)
        try:
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(args.report.resolve().as_uri(), wait_until="load")
            page.screenshot(path=str(args.out), full_page=True)
            page.screenshot(path=str(args.out.with_name(args.out.stem + f"_first{args.height}.png")))
            verdict = page.locator("div.verdict").first.bounding_box()
            wide = page.evaluate("() => Array.from(document.querySelectorAll('table, img')).filter("
                                 "t => t.getBoundingClientRect().right > window.innerWidth + 0.5).length")
        finally:
            browser.close()
    print(f"verdict box: {verdict}; elements wider than the window: {wide}")


if __name__ == "__main__":
    main()
