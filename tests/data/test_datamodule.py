"""DerainDataModule, composed from the real conf/data configs with tiny overrides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from derain.data import (
    PHOTO_SPLITS,
    DatasetNotFoundError,
    DerainDataModule,
    PairedDataset,
    SyntheticSet,
    TrainKey,
    find_pairs,
    write_image,
)
from derain.data.synthetic_set import write_synthetic_set
from derain.paths import config_dir

DATA_CONFIGS = sorted(path.stem for path in (config_dir() / "data").glob("*.yaml"))
FAST = ["data.num_workers=0", "data.patch_size=32", "data.batch_size=4"]


def make_datamodule(config: str, *overrides: str) -> DerainDataModule:
    with initialize_config_dir(version_base=None, config_dir=str(config_dir())):
        cfg = compose(overrides=[f"+data={config}", *overrides])
    return instantiate(cfg.data)


def _unclipped_difference(batch) -> float:
    """Largest |rainy − clean − rain| where the rainy image did not clip."""
    difference = (batch["rainy"] - batch["clean"] - batch["rain"]).abs()
    return float(difference[batch["rainy"] < 1].max())


@pytest.mark.parametrize("config", DATA_CONFIGS)
def test_every_data_config_instantiates_with_named_sets(config):
    datamodule = make_datamodule(config)
    assert isinstance(datamodule, DerainDataModule)
    assert datamodule.test_set_names and datamodule.val_set_names


def test_rain13k_config_names_its_five_test_sets():
    names = make_datamodule("rain13k").test_set_names
    assert names == ["Rain100L", "Rain100H", "Test100", "Test1200", "Test2800"]


def test_synthetic_training_batches_are_patches_with_rain(tmp_path):
    datamodule = make_datamodule("synthetic", *FAST)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch) == {"rainy", "clean", "rain", "name"}
    for key in ("rainy", "clean", "rain"):
        assert batch[key].shape == (4, 3, 32, 32) and batch[key].dtype == torch.float32
    assert len(batch["name"]) == 4 and all(isinstance(name, str) for name in batch["name"])


def test_light_rain_stays_aligned_after_flips_and_rotations():
    datamodule = make_datamodule("synthetic", *FAST, "data.train.presets=[light]")
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert _unclipped_difference(batch) < 1e-6


def test_validation_and_test_loaders_follow_the_set_names():
    datamodule = make_datamodule("synthetic", *FAST, "+data.val.synthetic_light.max_side=96")
    datamodule.setup("fit")
    datamodule.setup("test")
    assert datamodule.test_set_names == ["synthetic_light", "synthetic_heavy"]
    val_loaders, test_loaders = datamodule.val_dataloader(), datamodule.test_dataloader()
    assert len(val_loaders) == len(datamodule.val_set_names) == 2
    assert len(test_loaders) == 2
    first = next(iter(val_loaders[0]))
    assert first["rainy"].shape == (1, 3, 64, 96)  # rocket (427×640) fitted into 96, unaugmented
    assert "_light_" in first["name"][0]
    heavy = next(iter(test_loaders[1]))
    assert heavy["rainy"].shape[0] == 1 and "_heavy_" in heavy["name"][0]


def test_a_set_given_as_null_is_left_out():
    datamodule = make_datamodule(
        "synthetic", *FAST, "data.val.synthetic_light=null", "data.test.synthetic_heavy=null"
    )
    datamodule.setup("fit")
    datamodule.setup("test")
    assert datamodule.val_set_names == ["synthetic_heavy"]
    assert datamodule.test_set_names == ["synthetic_light"]
    assert len(datamodule.val_dataloader()) == len(datamodule.test_dataloader()) == 1


def test_training_and_evaluation_photos_do_not_overlap():
    datamodule = make_datamodule("synthetic", *FAST)
    datamodule.setup("fit")
    datamodule.setup("test")
    trained = {name for name, _, _ in datamodule.train_set.tiles}
    evaluated = {
        item["name"].rsplit("_", 2)[0]
        for dataset in datamodule.val_sets + datamodule.test_sets
        for item in dataset
    }
    assert trained == set(PHOTO_SPLITS["train"])
    assert evaluated == set(PHOTO_SPLITS["val"]) | set(PHOTO_SPLITS["test"])
    assert not trained & evaluated


def test_training_items_depend_only_on_the_key():
    datamodule = make_datamodule("synthetic", *FAST)
    datamodule.setup("fit")
    dataset = datamodule.train_set
    same = [dataset[TrainKey(7, 2, 32)] for _ in range(2)]
    assert torch.equal(same[0]["rainy"], same[1]["rainy"])
    next_epoch = dataset[TrainKey(7, 3, 32)]
    assert not torch.equal(same[0]["rain"], next_epoch["rain"])


def test_batches_do_not_depend_on_the_number_of_workers():
    batches = []
    for workers in (0, 2):
        datamodule = make_datamodule("synthetic", *FAST, f"data.num_workers={workers}")
        datamodule.setup("fit")
        batches.append(next(iter(datamodule.train_dataloader())))
    assert batches[0]["name"] == batches[1]["name"]
    assert torch.equal(batches[0]["rainy"], batches[1]["rainy"])


def test_persistent_workers_only_with_workers():
    for workers in (0, 1):
        datamodule = make_datamodule("synthetic", *FAST[1:], f"data.num_workers={workers}")
        datamodule.setup("fit")
        assert datamodule.train_dataloader().persistent_workers is (workers > 0)


def test_limit_keeps_evenly_spaced_items():
    datamodule = make_datamodule("synthetic", *FAST, "data.limit=5")
    datamodule.setup("fit")
    assert len(datamodule.train_set) == 5
    assert all(len(dataset) <= 5 for dataset in datamodule.val_sets)


def test_progressive_schedule_grows_patches_at_the_milestone():
    datamodule = make_datamodule(
        "synthetic",
        *FAST,
        "data.patch_sizes=[16,24]",
        "data.batch_sizes=[4,2]",
        "data.milestones=[2]",
    )
    datamodule.setup("fit")
    loader = iter(datamodule.train_dataloader())
    shapes = [tuple(next(loader)["rainy"].shape) for _ in range(3)]
    assert shapes == [(4, 3, 16, 16), (4, 3, 16, 16), (2, 3, 24, 24)]


def test_set_iteration_starts_the_schedule_later():
    datamodule = make_datamodule(
        "synthetic",
        *FAST,
        "data.patch_sizes=[16,24]",
        "data.batch_sizes=[4,2]",
        "data.milestones=[2]",
    )
    datamodule.setup("fit")
    datamodule.set_iteration(2)
    assert next(iter(datamodule.train_dataloader()))["rainy"].shape == (2, 3, 24, 24)


def test_missing_root_error_names_the_setting():
    datamodule = make_datamodule("rain13k", *FAST)
    with pytest.raises(DatasetNotFoundError, match=r"data\.root is not set: pass data\.root="):
        datamodule.setup("fit")


def test_wrong_root_error_names_the_setting(tmp_path):
    datamodule = make_datamodule("rain13k", *FAST, f"data.root={tmp_path}")
    with pytest.raises(
        DatasetNotFoundError, match=r"train/Rain13K does not exist.*check data\.root"
    ):
        datamodule.setup("fit")


@pytest.fixture
def paired_root(tmp_path) -> Path:
    """A `paired` config root: train/ and test/ written by the synthetic writer (light rain,
    rain layer included)."""
    write_synthetic_set(tmp_path / "train", "light", count=6, size=40, split="train")
    write_synthetic_set(tmp_path / "test", "light", count=2, size=56, split="test", seed=1)
    return tmp_path


def test_paired_config_reads_rain_layers_and_keeps_them_aligned(paired_root):
    datamodule = make_datamodule("paired", *FAST, f"data.root={paired_root}")
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["rain"].shape == (4, 3, 32, 32)
    assert _unclipped_difference(batch) < 1e-6
    test_batch = next(iter(datamodule.val_dataloader()[0]))
    assert test_batch["rainy"].shape == (1, 3, 56, 56)


def test_images_smaller_than_the_patch_are_reflect_padded(paired_root):
    datamodule = make_datamodule("paired", *FAST, f"data.root={paired_root}", "data.patch_size=64")
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["rainy"].shape == (4, 3, 64, 64)
    assert _unclipped_difference(batch) < 1e-6


def test_sets_without_rain_layer_give_batches_without_rain(tmp_path, files):
    for number in range(1, 5):
        files.write(tmp_path / "rainy" / f"rain-{number}.png", number, "rainy")
        files.write(tmp_path / f"norain-{number}.png", number, "clean")
    datamodule = DerainDataModule(train=str(tmp_path), num_workers=0, patch_size=32, batch_size=2)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch) == {"rainy", "clean", "name", "skipped"}  # skipped: unreadable files


def _augmented_cleans(tmp_path, examples, augment: str, epochs: int):
    """Training crops (40² of a 40-px-wide image, so only the flips vary) of one pair with a rain
    layer, checked to be flipped identically; returns the clean image and the clean crops."""
    square = {role: getattr(examples[0], role)[:, :40] for role in ("rainy", "clean", "rain")}
    for folder, role in [("input", "rainy"), ("target", "clean"), ("rain_layer", "rain")]:
        write_image(tmp_path / folder / "a.png", square[role])
    dataset = PairedDataset(find_pairs(tmp_path), train=True, patch_size=40, augment=augment)
    crops = []
    for epoch in range(epochs):
        item = dataset[TrainKey(0, epoch, 40)]
        assert (
            _unclipped_difference({key: item[key][None] for key in ("rainy", "clean", "rain")})
            < 1e-6
        )
        crops.append(item["clean"].permute(1, 2, 0).numpy())
    return square["clean"], crops


def test_d4_gives_all_eight_orientations_identically_to_each_image(tmp_path, examples):
    clean, crops = _augmented_cleans(tmp_path, examples, "d4", 48)
    orientations = [np.rot90(clean, k) for k in range(4)]
    orientations += [np.fliplr(o) for o in orientations]
    seen = {k for crop in crops for k, o in enumerate(orientations) if np.array_equal(o, crop)}
    assert seen == set(range(8))


def test_flips_give_the_four_orientation_keeping_flips_evenly_and_identically(tmp_path, examples):
    clean, crops = _augmented_cleans(tmp_path, examples, "flips", 200)
    flips = [clean, np.fliplr(clean), np.flipud(clean), np.flipud(np.fliplr(clean))]
    counts = [0] * 4
    for crop in crops:
        (index,) = [k for k, f in enumerate(flips) if np.array_equal(f, crop)]  # never a turn
        counts[index] += 1
    # each flip about a quarter of the time (binomial sd ≈ 6; two separate flip transforms
    # would draw in lockstep and give only the first and last)
    assert min(counts) > 30, counts


def test_training_set_spec_must_be_a_path_or_a_set():
    with pytest.raises(TypeError, match="data.train must be a path"):
        DerainDataModule(train=42)
    assert DerainDataModule(train=SyntheticSet()).train_spec == SyntheticSet()
