"""`derain-demo` used as a person uses it: headless Chromium (Debian's package, driven by
Playwright) uploads photos, waits for the result and downloads it. Every request the page makes
to a host other than this machine is refused and recorded."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from demo_server import start_demo
from photos import write_bad_files, write_large_rainy_photo, write_rainy_photo, y_psnr

from derain.data.io import read_image

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path(os.environ.get("DERAIN_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = os.environ.get("DERAIN_WEBAPP_SCREENSHOT")
"""Where to keep the screenshot of a successful run (docs/webapp.png was made this way)."""
RESULT_TIMEOUT_MS = 120_000

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does), or set "
        "DERAIN_CHROMIUM",
    ),
    pytest.mark.xdist_group("webapp-browser"),  # one server and browser for the module
]


@pytest.fixture(scope="module")
def server(briefly_trained_checkpoint, tmp_path_factory):
    server = start_demo(
        briefly_trained_checkpoint, tmp_path_factory.mktemp("browser"), "max_file_size=1MB"
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("files")
    rainy, clean = write_rainy_photo(folder)
    return {
        "rainy": rainy,
        "clean": clean,
        "large": write_large_rainy_photo(folder),
        **write_bad_files(folder / "bad"),
    }


@pytest.fixture
def visit(browser, server):
    """Opens the app in a fresh browser context; yields (page, outside requests). Requests to
    other hosts than the server's are aborted, as they would fail offline."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    local = urlsplit(server.url).hostname
    outside = []

    def only_local(route):
        if urlsplit(route.request.url).hostname == local:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.goto(server.url)
    page.wait_for_selector("#derain")
    yield page, outside
    context.close()


def upload(page, path: Path) -> None:
    """Puts `path` alone into the photo box, as choosing it in the file dialog does."""
    clear = page.locator("#photos").get_by_role("button", name="Clear")
    if clear.count():
        clear.first.click()
    page.locator("#photos input[type=file]").set_input_files(str(path))


def expect_error(page, text: str) -> None:
    """Asserts that an error message containing `text` appears on the page."""
    toast = page.locator(".toast-body").filter(has_text=text)
    sync_api.expect(toast).to_be_visible(timeout=RESULT_TIMEOUT_MS)


def test_a_rainy_photo_comes_back_derained_at_full_size(visit, files, tmp_path):
    page, outside = visit
    upload(page, files["rainy"])
    page.locator("#photos").get_by_text("rainy_cat").wait_for()
    page.click("#derain")
    link = page.locator("#downloads a[href*=rainy_cat_derained]")
    link.wait_for(timeout=RESULT_TIMEOUT_MS)
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    result, clean = read_image(saved), files["clean"]
    assert saved.name == "rainy_cat_derained.png" and result.shape == clean.shape
    assert y_psnr(result, clean) > y_psnr(read_image(files["rainy"]), clean) + 1
    assert page.locator("#slider img").count() == 2 and page.locator("#rain img").count() == 1
    assert "derained in" in page.locator("#report").inner_text()
    shot = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "page.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.stat().st_size > 0
    assert outside == []


def test_a_non_image_shows_an_error_and_a_valid_upload_still_works(visit, files):
    page, outside = visit
    upload(page, files["notes.txt"])  # the page itself refuses the suffix
    expect_error(page, "Invalid file type: notes.txt")
    upload(page, files["notes.png"])  # an image suffix, so the server has to find out
    page.locator("#photos").get_by_text("notes").wait_for()
    page.click("#derain")
    expect_error(page, "notes.png cannot be read as an image")
    upload(page, files["rainy"])
    page.locator("#photos").get_by_text("rainy_cat").wait_for()
    page.click("#derain")
    page.locator("#downloads a[href*=rainy_cat_derained]").wait_for(timeout=RESULT_TIMEOUT_MS)
    assert outside == []


def test_an_upload_over_the_size_limit_shows_an_error(visit, files):
    page, outside = visit
    upload(page, files["noise.png"])
    expect_error(page, "exceed the maximum allowed size")
    assert outside == []


def test_a_large_photo_shows_its_tiles_while_it_is_derained(visit, files):
    page, outside = visit
    upload(page, files["large"])
    page.locator("#photos").get_by_text("large_cat").wait_for()
    page.get_by_label("Memory budget", exact=False).click()
    page.get_by_role("option", name="256MB").click()
    page.click("#derain")
    progress = page.locator("#slider").get_by_text(
        re.compile(r"large_cat\.jpg \(1/1\): \d+/\d+ tiles")
    )
    sync_api.expect(progress).to_be_visible(timeout=RESULT_TIMEOUT_MS)
    page.locator("#downloads a[href*=large_cat_derained]").wait_for(timeout=RESULT_TIMEOUT_MS)
    assert re.search(r"1200×800, \d+ tiles", page.locator("#report").inner_text())
    assert outside == []


def test_clicking_an_example_derains_it(visit):
    page, outside = visit
    page.get_by_text("chelsea light rain").click()
    page.locator("#photos").get_by_text("chelsea_light_rain").wait_for()
    page.click("#derain")
    link = page.locator("#downloads a[href*=chelsea_light_rain_derained]")
    link.wait_for(timeout=RESULT_TIMEOUT_MS)
    assert outside == []


def test_an_error_after_a_result_clears_the_result_and_the_next_request_works(visit, files):
    page, outside = visit
    upload(page, files["rainy"])
    page.locator("#photos").get_by_text("rainy_cat").wait_for()
    page.click("#derain")
    page.locator("#downloads a[href*=rainy_cat_derained]").wait_for(timeout=RESULT_TIMEOUT_MS)
    assert "rainy_cat.png" in page.locator("#report").inner_text()
    upload(page, files["notes.png"])
    page.locator("#photos").get_by_text("notes").wait_for()
    page.click("#derain")
    expect_error(page, "notes.png cannot be read as an image")
    # nothing of the earlier request is left beside the error
    sync_api.expect(page.locator("#downloads a")).to_have_count(0)
    sync_api.expect(page.locator("#slider img")).to_have_count(0)
    assert "rainy_cat" not in page.locator("#report").inner_text()
    # and the page still derains
    upload(page, files["rainy"])
    page.locator("#photos").get_by_text("rainy_cat").wait_for()
    page.click("#derain")
    page.locator("#downloads a[href*=rainy_cat_derained]").wait_for(timeout=RESULT_TIMEOUT_MS)
    assert page.locator("#slider img").count() == 2
    assert outside == []
