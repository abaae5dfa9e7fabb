"""Screenshot the interactive view as a browser shows it, once it has drawn its first lattice.

    cartsim app --port 8765 &                                  # the view, on this machine
    python scripts/app_screenshot.py http://localhost:8765/ app.png [--steps N]

``chromium --headless --screenshot URL`` captures only "Loading app": the page is drawn by the
Solara server over a websocket after the page has loaded, which a one-shot screenshot does
not wait for (``--virtual-time-budget`` does not either). This script drives the system
Chromium (/usr/bin/chromium; ``apt-get install chromium``) through Playwright (``pip install
playwright``; it downloads no browser), waits for the lattice picture, optionally presses STEP
``--steps`` times, and saves the whole page as PNG.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
#: browser window (pixels): wide enough for the controls beside the lattice and the curves
VIEWPORT = {"width": 1500, "height": 1100}


def screenshot(url: str, path: str, steps: int = 0, timeout_s: float = 120.0) -> None:
    """Open ``url``, wait up to ``timeout_s`` for the lattice, press STEP ``steps`` times
    (waiting for each redraw), and save the full page to ``path``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport=VIEWPORT)
        try:
            page = context.new_page()
            page.goto(url, timeout=timeout_s * 1000)
            page.locator(".cartsim-lattice").first.wait_for(state="visible",
                                                            timeout=timeout_s * 1000)
            for _ in range(steps):
                page.get_by_role("button", name="Step").click(timeout=timeout_s * 1000)
                time.sleep(1.0)
            time.sleep(1.0)  # the last redraw reaches the browser
            page.screenshot(path=path, full_page=True)
        finally:
            context.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the view, e.g. http://localhost:8765/")
    parser.add_argument("path", help="PNG file to write")
    parser.add_argument("--steps", type=int, default=0, help="STEP presses before the picture")
    args = parser.parse_args()
    screenshot(args.url, args.path, args.steps)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
