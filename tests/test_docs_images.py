"""The screenshots the docs show (docs/images/): each is there, a whole PNG of its fixed size.

They are written by the browser tests that reach each state (see docs/images/README.md), so a
test run that changes what a page looks like changes the image, in `git status`. This checks
the files on disk, as written (and committed), not a stand-in.
"""

from __future__ import annotations

import pytest

from browser import DOCS_IMAGE_SIZES, DOCS_IMAGES, png_size

BUDGET_BYTES = 200 * 1024


@pytest.mark.parametrize("name", sorted(DOCS_IMAGE_SIZES))
def test_each_docs_image_is_a_whole_png_of_its_size(name):
    path = DOCS_IMAGES / f"{name}.png"
    assert path.is_file(), f"{path} is missing: run the browser tests (python -m pytest -q)"
    assert png_size(path) == DOCS_IMAGE_SIZES[name]
    assert path.stat().st_size < BUDGET_BYTES


def test_the_readme_names_each_image_and_only_those():
    readme = (DOCS_IMAGES / "README.md").read_text(encoding="utf-8")
    for name in DOCS_IMAGE_SIZES:
        assert f"`{name}.png`" in readme
    on_disk = {p.stem for p in DOCS_IMAGES.glob("*.png")}
    assert on_disk == set(DOCS_IMAGE_SIZES), "an image no test writes any more"


def test_a_damaged_png_is_refused(tmp_path):
    good = (DOCS_IMAGES / "loading.png").read_bytes()
    for name, data in {
        "truncated": good[: len(good) // 2],
        "flipped": good[:100] + bytes([good[100] ^ 1]) + good[101:],
        "not a png": b"GIF89a" + good[6:],
    }.items():
        bad = tmp_path / f"{name}.png"
        bad.write_bytes(data)
        with pytest.raises(ValueError):
            png_size(bad)
