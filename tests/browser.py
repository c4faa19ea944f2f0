"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, for what a person sees.

Playwright never downloads a browser here: it drives the system's Chromium.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
DOCS_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
# The docs' screenshots and each one's viewport (CSS pixels = image pixels, device scale 1):
# fixed, so an image changes only when what it shows does.
DOCS_IMAGE_SIZES: dict[str, tuple[int, int]] = {
    "loading": (900, 440),
    "console": (900, 1260),
    "preset-streamlit": (1000, 420),
}
# Chromium's background services try to reach the internet, which this machine does not allow.
QUIET_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@contextlib.contextmanager
def chromium_page(docs_image: str = ""):
    """A fresh page in a fresh headless Chromium; closed (browser included) on exit.

    `docs_image`: the page will be shot for docs/images/ (`docs_screenshot`), so it gets that
    image's viewport from the start (a resize just before the shot could reflow the page)."""
    from playwright.sync_api import sync_playwright

    options = {}
    if docs_image:
        width, height = DOCS_IMAGE_SIZES[docs_image]
        options = {"viewport": {"width": width, "height": height}, "device_scale_factor": 1}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=QUIET_FLAGS)
        try:
            context = browser.new_context(**options)
            yield context.new_page()
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    """Keep a screenshot as a test artifact (test-artifacts/NAME.png)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def docs_screenshot(page, name: str, shows: str) -> Path:
    """Write docs/images/NAME.png: the viewport only (not the full page), at NAME's fixed size.

    The test has waited for the state the image is for and asserted it; `shows`, a text of that
    state, must still be visible at the moment of the shot (a page that moved on is not shot).
    Animations are stopped (the loading page's spinner) so the pixels do not depend on timing.
    """
    from playwright.sync_api import expect

    width, height = DOCS_IMAGE_SIZES[name]
    assert page.viewport_size == {"width": width, "height": height}, "chromium_page(docs_image=)"
    expect(page.get_by_text(shows).first).to_be_visible()
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    path = DOCS_IMAGES / f"{name}.png"
    page.screenshot(
        path=str(path), full_page=False, scale="css", animations="disabled", caret="hide"
    )
    expect(page.get_by_text(shows).first).to_be_visible()
    assert png_size(path) == (width, height)
    return path


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file, once it is checked whole: its signature, every chunk's
    CRC, IHDR first, IEND last, and image data that decompresses to exactly the size IHDR says.
    Raises ValueError for anything else."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    chunks, offset = [], 8
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        if offset + 12 + length > len(data):
            raise ValueError(f"{path}: truncated")
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"{path}: a damaged {kind!r} chunk")
        chunks.append((kind, body))
        offset += 12 + length
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        raise ValueError(f"{path}: no IHDR first or no IEND last")
    if len(chunks[0][1]) != 13:
        raise ValueError(f"{path}: an IHDR of {len(chunks[0][1])} bytes")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if channels is None or interlace != 0:
        raise ValueError(f"{path}: colour type {colour} or interlace {interlace} not expected")
    row = 1 + (width * channels * depth + 7) // 8  # a filter byte, then the row's pixels
    try:
        pixels = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    except zlib.error as error:
        raise ValueError(f"{path}: image data that does not decompress: {error}") from None
    if len(pixels) != row * height:
        raise ValueError(f"{path}: {len(pixels)} bytes of pixels, not {row * height}")
    return width, height
