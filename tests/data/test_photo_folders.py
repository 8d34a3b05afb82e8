"""Synthetic rain on any folder of clean photos (DIV2K, Flickr2K, one's own), besides the photos
that ship with the installed packages."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from derain.data import DerainDataModule, SyntheticSet
from derain.data import photos as photos_module
from derain.data.datasets import SyntheticTrainDataset
from derain.data.photos import folder_photos, load_photo, photo_list, photo_size


def _save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


@pytest.fixture
def photo_folder(tmp_path):
    """Photos of several formats and sizes in nested folders, with junk beside them."""
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    _save(root / "a.png", rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))
    _save(root / "trip" / "b.JPG", rng.integers(0, 255, (70, 50, 3), dtype=np.uint8))
    _save(root / "trip" / "deeper" / "c.webp", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    _save(root / "grey.tif", rng.integers(0, 255, (40, 60), dtype=np.uint8))
    (root / "notes.txt").write_text("not a photo")
    (root / ".DS_Store").write_bytes(b"\0")
    _save(root / ".hidden" / "d.png", np.zeros((8, 8, 3), np.uint8))
    return root


def test_a_folder_lists_its_photos_recursively_and_skips_the_rest(photo_folder):
    found = folder_photos(photo_folder)
    names = [path.split("/")[-1] for path in found]
    assert names == ["a.png", "grey.tif", "b.JPG", "c.webp"]  # sorted by path
    assert all(path.startswith("/") for path in found)


def test_a_missing_or_empty_folder_names_itself(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"photo folder .*nowhere does not exist"):
        folder_photos(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"no photos under .*empty"):
        folder_photos(tmp_path / "empty")


def test_folder_photos_load_at_full_size_and_as_rgb(photo_folder):
    grey = str(photo_folder / "grey.tif")
    image = load_photo(grey)
    assert image.shape == (40, 60, 3) and image.dtype == np.float32
    assert np.array_equal(image[..., 0], image[..., 2])
    assert photo_size(str(photo_folder / "a.png")) == (90, 120)
    assert load_photo(grey) is image  # decoded once while it stays in the cache


def test_the_photo_cache_drops_the_least_recently_used(photo_folder, monkeypatch):
    cache = photos_module._PhotoCache()
    monkeypatch.setattr(photos_module, "PHOTO_CACHE_BYTES", 120 * 90 * 3 * 4 + 1)
    first, second = (str(p) for p in (photo_folder / "a.png", photo_folder / "grey.tif"))
    cache.get(first)
    cache.get(second)  # together over the budget: the older one goes
    assert list(cache._photos) == [second]


def test_bundled_and_folder_photos_combine(photo_folder):
    listed = photo_list("test", [photo_folder])
    assert listed[:2] == ("coffee", "chelsea") and len(listed) == 6
    assert photo_list(None, [photo_folder]) == folder_photos(photo_folder)
    with pytest.raises(ValueError, match="no photos"):
        photo_list(None, [])


def test_training_patches_come_from_every_folder_photo(photo_folder):
    files = folder_photos(photo_folder)
    dataset = SyntheticTrainDataset(
        presets=("light",), patch_size=32, tile_stride=32, augment="none", photos=files
    )
    sources = {dataset[i]["name"].rsplit("_", 2)[0] for i in range(len(dataset))}
    assert sources == {"a", "b", "c", "grey"}
    item = dataset[0]
    assert item["rainy"].shape == (3, 32, 32) and item["clean"].shape == (3, 32, 32)


def test_a_datamodule_trains_and_tests_on_folders_under_its_root(photo_folder):
    datamodule = DerainDataModule(
        train=SyntheticSet(split=None, folders=("photos",)),
        test={"mine": SyntheticSet(split=None, folders=("photos/trip",), max_side=48)},
        root=photo_folder.parent,
        patch_size=32,
        batch_size=2,
        num_workers=0,
    )
    datamodule.setup("fit")
    datamodule.setup("test")
    (test_set,) = datamodule.test_sets
    names = sorted(test_set[i]["name"] for i in range(len(test_set)))
    assert names == ["b_light_0", "c_light_0"]
    assert max(test_set[0]["clean"].shape[1:]) <= 48
