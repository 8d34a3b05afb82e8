"""`derain-demo` through `gradio_client`, the API every Gradio page exposes: a running server
derains uploads, refuses bad ones with a message and keeps serving, and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from demo_server import start_demo
from photos import write_bad_files, write_rainy_photo, y_psnr
from PIL import Image

from derain.data.io import read_image

gradio_client = pytest.importorskip("gradio_client")

pytestmark = pytest.mark.xdist_group("webapp-api")  # one server for the module

MAX_PIXELS = 200_000  # the rainy cat (451×300) fits, a 600×400 photo does not
MAX_FILE_SIZE = "1MB"


@pytest.fixture(scope="module")
def server(briefly_trained_checkpoint, tmp_path_factory):
    server = start_demo(
        briefly_trained_checkpoint,
        tmp_path_factory.mktemp("api"),
        f"max_pixels={MAX_PIXELS}",
        f"max_file_size={MAX_FILE_SIZE}",
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    downloads = tmp_path_factory.mktemp("downloads")
    return gradio_client.Client(server.url, verbose=False, download_files=str(downloads))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uploads")
    rainy, clean = write_rainy_photo(folder)
    Image.open(rainy).save(folder / "rainy_cat.jpg", quality=92)
    Image.new("RGB", (600, 400), "grey").save(folder / "large.png")
    return {
        "rainy": rainy,
        "clean": clean,
        "large": folder / "large.png",
        **write_bad_files(folder / "bad"),
    }


def derain(client, *paths, ensemble="off", memory="2GB", quality=95):
    """The /derain endpoint: (before/after, rain layer, report, result files, shown photo)."""
    uploads = [gradio_client.handle_file(str(path)) for path in paths]
    return client.predict(uploads, ensemble, memory, quality, api_name="/derain")


def test_a_rainy_photo_comes_back_full_size_and_closer_to_the_clean_one(client, files):
    (before, after), rain, report, outputs, _ = derain(client, files["rainy"])
    (output,) = outputs
    assert output.endswith("rainy_cat_derained.png")
    result = read_image(output)
    assert result.shape == files["clean"].shape
    assert y_psnr(result, files["clean"]) > y_psnr(read_image(files["rainy"]), files["clean"]) + 1
    assert "rainy_cat.png" in report and "451×300" in report and " s" in report
    assert read_image(rain).shape == result.shape  # the preview of a small photo is full size


def test_a_jpeg_comes_back_as_a_jpeg_at_the_quality_asked_for(client, files):
    sizes = {}
    for quality in (95, 40):
        *_, outputs, _ = derain(client, files["rainy"].with_suffix(".jpg"), quality=quality)
        with Image.open(outputs[0]) as result:
            assert result.format == "JPEG" and result.size == (451, 300)
            # PIL writes quality q with the standard tables scaled by (200 - 2q) / 100 (q ≥ 50)
            # or 5000 / q: the luminance table's first entry, 16 at scale 1
            scale = (200 - 2 * quality) / 100 if quality >= 50 else 50 / quality
            assert result.quantization[0][0] == max(1, int(16 * scale + 0.5))
        sizes[quality] = Path(outputs[0]).stat().st_size
    assert sizes[40] < sizes[95] / 2


def test_several_photos_each_come_back_and_can_be_shown_in_turn(client, files):
    *_, outputs, shown = derain(client, files["rainy"], files["rainy"].with_suffix(".jpg"))
    assert [output.rsplit("/", 1)[-1] for output in outputs] == [
        "rainy_cat_derained.png",
        "rainy_cat_derained.jpg",
    ]
    assert shown["visible"] is True and len(shown["choices"]) == 2


def test_the_self_ensemble_setting_reaches_the_network(client, files):
    *_, report, _, _ = derain(client, files["rainy"], ensemble="flips")
    assert "4 flips" in report


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("notes.png", r"notes\.png cannot be read as an image"),
        ("cut.png", r"cut\.png cannot be read as an image: the file is damaged"),
    ],
)
def test_a_bad_upload_is_refused_with_its_reason_and_the_app_keeps_serving(
    client, files, name, message
):
    with pytest.raises(gradio_client.exceptions.AppError, match=message):
        derain(client, files[name])
    *_, outputs, _ = derain(client, files["rainy"])
    assert len(outputs) == 1


def test_a_photo_over_the_pixel_limit_says_how_to_raise_it(client, files):
    with pytest.raises(gradio_client.exceptions.AppError, match=r"max_pixels=240000"):
        derain(client, files["large"])


def test_a_bad_file_among_good_ones_is_skipped_and_reported(client, files):
    *_, report, outputs, _ = derain(client, files["notes.png"], files["rainy"])
    assert len(outputs) == 1
    assert "skipped" in report and "notes.png cannot be read" in report


def test_an_upload_over_the_size_limit_is_refused_before_it_is_stored(client, server, files):
    assert files["noise.png"].stat().st_size > 10**6
    with pytest.raises(Exception, match=r"(?i)size"):
        derain(client, files["noise.png"])
    stored = [path.name for path in server.workspace.rglob("*.png")]
    assert "noise.png" not in stored


def test_stopping_the_app_leaves_nothing_behind_and_it_contacted_no_outside_host(
    briefly_trained_checkpoint, tmp_path, files
):
    server = start_demo(briefly_trained_checkpoint, tmp_path / "app")
    client = gradio_client.Client(server.url, verbose=False, download_files=str(tmp_path))
    derain(client, files["rainy"])
    assert server.workspace.is_dir() and any(server.workspace.rglob("*_derained.png"))
    assert server.stop() == 0
    assert not server.workspace.exists()
    left = {folder.name: list(folder.iterdir()) for folder in (server.home, server.tmp, server.cwd)}
    assert left == {"home": [], "tmp": [], "cwd": []}
    assert server.outside_contacts() == []
