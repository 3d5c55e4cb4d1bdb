"""The Lecture page in headless Chromium: every slide by URL and by button, and downloads."""

from __future__ import annotations

import time

import pytest
from test_browser import ARTIFACTS, _settled, _shot, browser, page, server  # noqa: F401

from resnet_core.views.lecture import lecture_slides

SLIDES = lecture_slides()  # what the shipped results fill, then Your turn

pytestmark = pytest.mark.browser

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _charts_drawn(tab) -> None:
    """Wait until no element is still loading and every Vega chart has drawn its marks."""
    tab.wait_for_function(
        """() => !document.querySelector('[data-testid=stSkeleton], [data-testid=stSkeletonElement]')
                 && [...document.querySelectorAll('[data-testid=stVegaLiteChart]')]
                    .every(c => c.querySelector('svg.marks, canvas.marks'))""",
        timeout=60_000,
    )


def _no_exception(tab) -> None:
    assert tab.locator("[data-testid=stException]").count() == 0, tab.inner_text("body")[:2000]


def test_walk_every_slide_and_download_figures(page, server):  # noqa: F811
    page.goto(f"{server['url']}/lecture?slide=1")
    _settled(page)
    timings = []
    for number, slide in enumerate(SLIDES, start=1):
        page.get_by_role("heading", name=slide.title).wait_for(timeout=90_000)
        _settled(page)
        _charts_drawn(page)
        _no_exception(page)
        assert f"slide={number}" in page.url
        assert page.get_by_text(f"Slide {number} of {len(SLIDES)}").count() == 1
        _shot(page, f"lecture-{number}-{slide.key}")
        if number < len(SLIDES):
            started = time.perf_counter()
            page.get_by_role("button", name="Next").click()
            page.get_by_role("heading", name=SLIDES[number].title).wait_for(timeout=90_000)
            _settled(page)
            timings.append((SLIDES[number].key, time.perf_counter() - started))
    print("\nslide render times (s):", ", ".join(f"{k} {t:.2f}" for k, t in timings))

    # A link opens the right slide; out-of-range numbers clamp.
    page.goto(f"{server['url']}/lecture?slide=99")
    _settled(page)
    page.get_by_role("heading", name=SLIDES[-1].title).wait_for()
    assert f"slide={len(SLIDES)}" in page.url

    page.goto(f"{server['url']}/lecture?slide=1")
    _settled(page)
    _charts_drawn(page)
    for label, check in (
        ("PNG", lambda b: b.startswith(PNG_MAGIC)),
        ("SVG", lambda b: b"<svg" in b[:2000]),
    ):
        page.get_by_role("button", name="Figures").click()  # the downloads sit in the top row
        with page.expect_download(timeout=60_000) as info:
            page.locator("[data-testid=stDownloadButton] button", has_text=label).first.click()
        page.keyboard.press("Escape")
        path = info.value.path()
        data = open(path, "rb").read()
        assert check(data), f"{label} download is not a valid image: {data[:80]!r}"
        (ARTIFACTS / f"lecture-download.{label.lower()}").write_bytes(data)
    if True:  # the PNG really decodes as an image
        from PIL import Image

        with Image.open(ARTIFACTS / "lecture-download.png") as image:
            assert image.width > 100 and image.height > 100


def test_arrow_keys_and_a_clicker_move_between_slides(page, server):  # noqa: F811
    page.goto(f"{server['url']}/lecture?slide=1")
    _settled(page)
    current = 1
    for key, number in (("ArrowRight", 2), ("PageDown", 3), ("PageUp", 2), ("ArrowLeft", 1)):
        heading = page.get_by_role("heading", name=SLIDES[current - 1].title)
        heading.wait_for(timeout=90_000)
        _settled(page)
        _charts_drawn(page)  # the slide is complete: its shortcuts are listening
        heading.click()  # focus the page, not a widget
        page.keyboard.press(key)
        page.get_by_role("heading", name=SLIDES[number - 1].title).wait_for(timeout=90_000)
        _settled(page)
        assert f"slide={number}" in page.url, (key, page.url)
        current = number
    _no_exception(page)


# Every element on screen that scrolls (the collapsed sidebar lies off screen, to the left).
OVERFLOWING = """() => [...document.querySelectorAll('*')]
    .filter(e => e.getBoundingClientRect().right > 0
                 && ['auto', 'scroll'].includes(getComputedStyle(e).overflowY)
                 && e.scrollHeight > e.clientHeight + 2)
    .map(e => `${e.getAttribute('data-testid') || e.tagName} ${e.scrollHeight} > ${e.clientHeight}`)"""


def test_every_slide_fits_a_projector_without_scrolling(browser, server):  # noqa: F811
    """1280x800, the sidebar collapsed, large fonts on: no slide needs a scroll."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    try:
        tab.goto(f"{server['url']}/lecture?slide=1")
        _settled(tab)
        tab.get_by_text("Large fonts (projector)").click()
        tab.wait_for_function(  # the switch's rerun has applied the projector fonts
            """() => getComputedStyle(document.querySelector('[data-testid=stMain] p'))
                     .fontSize === '20.8px'""",
            timeout=90_000,
        )
        tab.locator("[data-testid=stSidebar]").hover()  # its collapse button shows on hover
        tab.get_by_role("button", name="Collapse sidebar").click()
        tab.wait_for_function(  # collapsed, and slid off screen
            """() => document.querySelector('[data-testid=stSidebar]')
                     .getBoundingClientRect().right <= 0""",
            timeout=30_000,
        )
        for number, slide in enumerate(SLIDES, start=1):
            tab.get_by_role("heading", name=slide.title).wait_for(timeout=90_000)
            _settled(tab)
            _charts_drawn(tab)
            _no_exception(tab)
            tab.screenshot(path=str(ARTIFACTS / f"projector-{number}-{slide.key}.png"))
            assert tab.evaluate(OVERFLOWING) == [], (number, slide.key)
            if number < len(SLIDES):
                tab.get_by_role("button", name="Next").click()
    finally:
        context.close()
