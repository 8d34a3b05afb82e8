"""Unreadable images: replaced during training within a limit, listed at set-up, never skipped
in test sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from derain.data import DerainDataModule, ImageReadError, find_pairs, read_image_size
from derain.data.checks import BadSampleWarning, TooManyBadSamplesError, scan_files
from derain.data.datasets import PairedDataset
from helpers import run_cli, run_dirs


def _truncate(path: Path) -> Path:
    """Keep the header and half the pixel data: the file opens, then fails to decode."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _paired_folder(root: Path, files, count: int, bad: tuple[int, ...] = ()) -> list[Path]:
    """input/N.png + target/N.png for N < count; the rainy images of `bad` truncated."""
    cut = []
    for number in range(count):
        files.write(root / "input" / f"{number}.png", number % 3, "rainy")
        files.write(root / "target" / f"{number}.png", number % 3, "clean")
        if number in bad:
            cut.append(_truncate(root / "input" / f"{number}.png"))
    return cut


def test_a_truncated_file_passes_the_header_check_but_not_the_full_one(tmp_path, files):
    (cut,) = _paired_folder(tmp_path, files, 2, bad=(1,))
    assert read_image_size(cut) == (40, 48)
    sizes, bad = scan_files([cut, tmp_path / "input" / "0.png"], "header")
    assert not bad and len(sizes) == 2
    sizes, bad = scan_files([cut, tmp_path / "input" / "0.png"], "full", workers=2)
    assert list(bad) == [cut] and list(sizes) == [tmp_path / "input" / "0.png"]


def test_a_bad_training_sample_is_replaced_with_a_warning_naming_it(tmp_path, files):
    (cut,) = _paired_folder(tmp_path, files, 4, bad=(2,))
    pairs = find_pairs(tmp_path, check_images=False)
    dataset = PairedDataset(pairs, train=True, patch_size=32, max_bad=1)
    with pytest.warns(BadSampleWarning, match=str(cut)):
        item = dataset[2]
    assert item["name"] != "2" and item["rainy"].shape == (3, 32, 32)
    assert item["skipped"] == str(cut)
    assert dataset[0]["skipped"] == ""
    assert dataset[2]["skipped"] == str(cut)  # the same replacement, without reading it again


@pytest.mark.filterwarnings("ignore::derain.data.checks.BadSampleWarning")
def test_more_bad_samples_than_allowed_stop_with_every_file_named(tmp_path, files):
    cuts = _paired_folder(tmp_path, files, 4, bad=(1, 2))
    dataset = PairedDataset(find_pairs(tmp_path, check_images=False), train=True, max_bad=1)
    with pytest.raises(TooManyBadSamplesError, match="2 of 4 pairs") as error:
        for index in (1, 2):
            dataset[index]
    assert all(str(cut) in str(error.value) for cut in cuts)
    assert "data.max_bad_fraction" in str(error.value)


def test_fail_fast_raises_at_the_first_bad_sample(tmp_path, files):
    (cut,) = _paired_folder(tmp_path, files, 4, bad=(3,))
    datamodule = DerainDataModule(
        train=str(tmp_path), num_workers=0, patch_size=32, batch_size=4, fail_fast=True
    )
    datamodule.setup("fit")
    with pytest.raises(ImageReadError, match=str(cut)):
        next(iter(datamodule.train_dataloader()))


def test_a_bad_test_image_fails_naming_it_even_unchecked(tmp_path, files):
    (cut,) = _paired_folder(tmp_path, files, 3, bad=(1,))
    datamodule = DerainDataModule(test={"mine": str(tmp_path)}, num_workers=0, check_images=False)
    datamodule.setup("test")
    with pytest.raises(ImageReadError, match=str(cut)):
        list(datamodule.test_dataloader()[0])


def test_full_check_lists_every_bad_test_file_at_once(tmp_path, files):
    cuts = _paired_folder(tmp_path, files, 5, bad=(1, 3))
    datamodule = DerainDataModule(test={"mine": str(tmp_path)}, check_images="full")
    with pytest.raises(ImageReadError, match="2 file") as error:
        datamodule.setup("test")
    assert all(str(cut) in str(error.value) for cut in cuts)
    assert "scored whole" in str(error.value)


def test_full_check_leaves_bad_training_pairs_out_within_the_limit(tmp_path, files):
    (cut,) = _paired_folder(tmp_path, files, 10, bad=(4,))
    datamodule = DerainDataModule(train=str(tmp_path), check_images="full", max_bad_fraction=0.1)
    with pytest.warns(BadSampleWarning, match=str(cut)):
        datamodule.setup("fit")
    assert len(datamodule.train_set) == 9
    assert datamodule.excluded == {"data.train": [str(cut)]}
    strict = DerainDataModule(train=str(tmp_path), check_images="full", max_bad_fraction=0.05)
    with pytest.raises(TooManyBadSamplesError, match=str(cut)):
        strict.setup("fit")


def test_bad_fraction_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="data.max_bad_fraction"):
        DerainDataModule(max_bad_fraction=5)


# ------------------------------------------------------------------- whole runs, two workers
def _train_args(root: Path, fraction: float) -> list[str]:
    return [
        "model=elf_tiny",
        "model.width=8",
        "data=paired",
        f"data.root={root}",
        "data.patch_size=32",
        "data.batch_size=2",
        "data.num_workers=2",
        f"data.max_bad_fraction={fraction}",
        "callbacks.progress_bar=null",
        "trainer.max_epochs=2",
        "test=false",
    ]


def test_a_run_skips_a_bad_image_and_reports_the_count_from_every_worker(tmp_path, files):
    (cut,) = _paired_folder(tmp_path / "data" / "train", files, 10, bad=(6,))
    _paired_folder(tmp_path / "data" / "test", files, 2)
    proc = run_cli("derain-train", *_train_args(tmp_path / "data", 0.1), cwd=tmp_path)
    assert str(cut) in proc.stderr  # the warning names the file
    (run,) = run_dirs(tmp_path)
    report = json.loads((run / "skipped_samples.json").read_text())
    assert report["skipped_samples"] == {"train": 2, "val": 0}  # once in each of 2 epochs
    assert report["skipped_files"] == {"data.train": [str(cut)]}


def test_a_run_stops_when_the_workers_together_see_too_many_bad_images(tmp_path, files):
    cuts = _paired_folder(tmp_path / "data" / "train", files, 10, bad=(2, 7))
    _paired_folder(tmp_path / "data" / "test", files, 2)
    proc = run_cli("derain-train", *_train_args(tmp_path / "data", 0.1), cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "TooManyBadSamplesError" in proc.stderr and "more than the 1 allowed" in proc.stderr
    assert any(str(cut) in proc.stderr for cut in cuts)
