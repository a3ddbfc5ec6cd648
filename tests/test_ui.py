"""The local web UI, driven in headless Chromium: upload a photo, protect it, download the result."""

from __future__ import annotations

import contextlib
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _upload(page, sync_api, port: int, src: Path, console: list[str], attempts: int = 3) -> None:
    """Open the app and upload ``src``; retried on a fresh page load when the upload does not show up.

    On a loaded 2-core machine the file name has twice failed to appear within 60 s (once in CI, once in a local run
    under load; reruns passed), most likely a change event lost while the page was still hydrating. Each attempt waits
    for the network to go idle before it sets the file; a failure reports what the page and its console showed.
    """
    for attempt in range(1, attempts + 1):
        page.goto(f"http://127.0.0.1:{port}/", wait_until="load", timeout=60_000)
        page.locator("#protect").wait_for(timeout=60_000)
        # a long-poll can keep the network busy; the upload below is what matters
        with contextlib.suppress(sync_api.TimeoutError):
            page.wait_for_load_state("networkidle", timeout=30_000)
        page.locator("#upload input[type=file]").set_input_files(str(src))
        try:
            page.locator("#upload").get_by_text(src.name).first.wait_for(timeout=40_000)  # upload finished
            return
        except sync_api.TimeoutError:
            if attempt == attempts:
                body = page.locator("body").inner_text(timeout=10_000)[-2000:]
                raise AssertionError(
                    f"the upload of {src.name} did not show in the page after {attempts} attempts; "
                    f"page text: {body!r}; console: {console[-20:]}"
                ) from None


@pytest.mark.shared
def test_upload_protect_download_in_chromium(shared, tmp_path):
    pytest.importorskip("gradio", reason="the UI extra (gradio) is not installed")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium chromium-driver)")
    from nullswap.ui import build_app

    src = tmp_path / "face.jpg"
    im = Image.open(shared / "data" / "photos" / "obama1.jpg").convert("RGB")
    im.thumbnail((360, 360))
    im.save(src)
    port = _free_port()
    out = tmp_path / "ui-out"
    app = build_app(out)
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, allowed_paths=[str(out)])
    console: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(accept_downloads=True)
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            _upload(page, sync_api, port, src, console)
            page.locator("#method input").fill("fgsm")
            page.keyboard.press("Enter")
            page.locator("#protect").click()
            link = page.locator("#downloads a").first
            link.wait_for(timeout=120_000)
            with page.expect_download(timeout=60_000) as dl:
                link.click()
            saved = tmp_path / "downloaded.jpg"
            dl.value.save_as(saved)
            browser.close()
    finally:
        app.close()
    got = np.asarray(Image.open(saved).convert("RGB")).astype(int)
    orig = np.asarray(Image.open(src).convert("RGB")).astype(int)
    assert got.shape == orig.shape
    assert np.abs(got - orig).max() > 0  # the face was changed
    assert np.abs(got - orig).mean() < 3  # imperceptibly
    assert Path(out).is_dir() and any(out.iterdir())
