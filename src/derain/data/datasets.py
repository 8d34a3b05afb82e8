"""Torch datasets of rainy/clean items: pairs from disk and synthetic rain on bundled photos.

An item is a dict {"rainy": 3×H×W, "clean": 3×H×W, "rain": 3×H×W (only when the whole dataset
has rain layers), "name": str}, float32 tensors in [0, 1]. Training items are random patches
with flips/rotations, built from a `TrainKey` (index, epoch, patch size) alone, so they do not
depend on the worker that makes them; evaluation items are whole images, unaugmented.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch.utils.data import Dataset

from derain.data.checks import TooManyBadSamplesError, warn_bad_sample
from derain.data.io import ImageReadError
from derain.data.pairs import Pair, load_pair
from derain.data.photos import (
    Split,
    crop_around,
    fit_longest_side,
    is_photo_path,
    load_photo,
    photo_names,
    photo_size,
)
from derain.data.sampling import TrainKey
from derain.data.synthetic import SyntheticRain, expand_presets, rain_config

# albumentations asks PyPI for a newer version at import time (a 2 s timeout offline)
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402
import cv2  # noqa: E402

Augment = Literal["d4", "flips", "hflip", "none"]
AUGMENTS: tuple[str, ...] = get_args(Augment)
Item = dict[str, torch.Tensor | str]

_STAGE_KEYS = {"train": 0, "val": 1, "test": 2, "replace": 3}
_MAX_REPLACEMENTS = 100


class PairTransform:
    """Random patch crop plus flips/rotations, applied identically to rainy, clean and rain.

    Args:
        augment: "d4" (the 8 flips/rotations), "flips" (left-right and top-bottom flips: the 4
            symmetries that keep near-vertical streaks near-vertical), "hflip" (left-right
            flip only, keeps rain falling downwards) or "none".
    """

    def __init__(self, augment: Augment = "d4") -> None:
        if augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, got {augment!r}")
        self.augment = augment
        self._by_patch_size: dict[int, A.Compose] = {}

    def __call__(
        self,
        rainy: np.ndarray,
        clean: np.ndarray,
        rain: np.ndarray | None,
        patch_size: int,
        seed: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Crop H×W×3 images to patch_size² (reflect-padding smaller ones) and flip them.

        `seed` fixes the crop position and the flip, so equal seeds give equal patches.
        """
        compose = self._compose(patch_size)
        compose.set_random_seed(seed)
        targets = {"image": rainy, "clean": clean}
        if rain is not None:
            targets["rain"] = rain
        out = compose(**targets)
        return out["image"], out["clean"], out.get("rain")

    def _compose(self, patch_size: int) -> A.Compose:
        if patch_size not in self._by_patch_size:
            flips = {
                "d4": [A.D4(p=1.0)],
                # one draw picks among the four: separate HorizontalFlip and VerticalFlip in one
                # Compose draw in lockstep (albumentations 2), giving only identity and half turn
                "flips": [
                    A.OneOf(
                        [
                            A.NoOp(p=1.0),
                            A.HorizontalFlip(p=1.0),
                            A.VerticalFlip(p=1.0),
                            A.Sequential([A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0)], p=1.0),
                        ],
                        p=1.0,
                    )
                ],
                "hflip": [A.HorizontalFlip(p=0.5)],
                "none": [],
            }
            self._by_patch_size[patch_size] = A.Compose(
                [
                    A.PadIfNeeded(patch_size, patch_size, border_mode=cv2.BORDER_REFLECT_101),
                    A.RandomCrop(patch_size, patch_size),
                    *flips[self.augment],
                ],
                additional_targets={"clean": "image", "rain": "image"},
            )
        return self._by_patch_size[patch_size]


def to_item(rainy: np.ndarray, clean: np.ndarray, rain: np.ndarray | None, name: str) -> Item:
    """H×W×3 arrays → the item dict of 3×H×W float32 tensors (no "rain" key when it is None)."""
    item: Item = {"rainy": _to_tensor(rainy), "clean": _to_tensor(clean), "name": name}
    if rain is not None:
        item["rain"] = _to_tensor(rain)
    return item


class PairedDataset(Dataset):
    """Pairs found on disk (see `find_pairs`).

    Args:
        pairs: the pairs, e.g. from `find_pairs`.
        train: random patches with augmentation when True, whole images when False.
        patch_size: patch side for training items indexed by a plain int.
        augment: see `PairTransform`.
        seed: with the `TrainKey`, fixes each training item's crop and flip.
        max_bad: None: a pair that cannot be read raises `ImageReadError` (test sets). A number:
            such a pair is replaced, with a `BadSampleWarning`, by another one drawn from
            (seed, key), and its files are listed in the item's "skipped" entry (newline-
            separated, "" for none) so that the run can count them whatever process loaded
            them; more than `max_bad` distinct bad pairs seen by one process raise
            `TooManyBadSamplesError`.

    `has_rain` is True only when every pair has a rain layer, so batches never mix items with
    and without one.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        train: bool,
        patch_size: int = 128,
        augment: Augment = "d4",
        seed: int = 0,
        max_bad: int | None = None,
    ) -> None:
        self.pairs = list(pairs)
        self.train = train
        self.patch_size = patch_size
        self.seed = seed
        self.max_bad = max_bad
        self.has_rain = bool(self.pairs) and all(pair.rain is not None for pair in self.pairs)
        self.transform = PairTransform(augment)
        self._bad: dict[int, tuple[Path, str]] = {}  # this process's bad pairs: index → file

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: int | TrainKey) -> Item:
        if self.max_bad is None:
            return self._load(key)
        skipped: list[str] = []
        for attempt in range(_MAX_REPLACEMENTS):
            index = key.index if isinstance(key, TrainKey) else int(key)
            if index not in self._bad:
                try:
                    item = self._load(key)
                except (ImageReadError, FileNotFoundError) as err:
                    self._remember_bad(index, err)
                else:
                    item["skipped"] = "\n".join(skipped)
                    return item
            skipped.append(str(self._bad[index][0]))
            key = self._replacement(key, attempt)
        raise TooManyBadSamplesError(
            f"{_MAX_REPLACEMENTS} samples in a row could not be read, e.g. {skipped[-1]}: check "
            "the data set's files (data.check_images=full lists every bad one)"
        )

    def _remember_bad(self, index: int, err: Exception) -> None:
        path = (
            getattr(err, "path", None) or getattr(err, "filename", None) or self.pairs[index].rainy
        )
        self._bad[index] = (Path(path), str(err))
        if len(self._bad) > self.max_bad:
            listed = "\n".join(f"  {file}: {reason}" for file, reason in self._bad.values())
            raise TooManyBadSamplesError(
                f"{len(self._bad)} of {len(self.pairs)} pairs cannot be read, more than the "
                f"{self.max_bad} allowed (data.max_bad_fraction):\n{listed}\nFix or remove "
                "these files, or raise data.max_bad_fraction"
            )
        warn_bad_sample(path, str(err.__cause__ or err))

    def _replacement(self, key: int | TrainKey, attempt: int) -> int | TrainKey:
        """Another pair than `key`'s, drawn from (seed, key, attempt): a resumed run draws
        the same."""
        index = key.index if isinstance(key, TrainKey) else int(key)
        epoch = key.epoch if isinstance(key, TrainKey) else 0
        rng = np.random.default_rng([self.seed, _STAGE_KEYS["replace"], index, epoch, attempt])
        other = (index + 1 + int(rng.integers(max(1, len(self.pairs) - 1)))) % len(self.pairs)
        return key._replace(index=other) if isinstance(key, TrainKey) else other

    def _load(self, key: int | TrainKey) -> Item:
        if not self.train:
            pair = self.pairs[key]
            rainy, clean, rain = load_pair(pair)
            return to_item(rainy, clean, rain if self.has_rain else None, pair.name)
        key = _as_train_key(key, self.patch_size)
        pair = self.pairs[key.index]
        rainy, clean, rain = load_pair(pair)
        rainy, clean, rain = self.transform(
            rainy,
            clean,
            rain if self.has_rain else None,
            key.patch_size,
            _item_seed(self.seed, key),
        )
        return to_item(rainy, clean, rain, pair.name)


class SyntheticTrainDataset(Dataset):
    """Training patches with fresh synthetic rain, cut from the bundled training photos.

    Items are tile centres on a grid of step `tile_stride` over every training photo; an item's
    patch is centred near its tile (jittered by up to half a step), rained on with one of
    `presets`, then flipped/rotated. Everything is drawn from (seed, index, epoch), so each epoch
    brings new rain while a given key always gives the same patch.

    Args:
        presets: rain presets or families (`RAIN_FAMILIES`, which give their presets) to pick
            from, uniformly per item.
        patch_size: patch side for items indexed by a plain int.
        tile_stride: spacing of tile centres in pixels (64 gives 512 tiles).
        augment: see `PairTransform`.
        seed: the data seed.
        photos: the photos to tile: bundled photo names or photo file paths (default: the
            "train" split of `PHOTO_SPLITS`).
        limit: keep at most this many tiles, evenly spaced (quick runs).
        rain: `RainConfig` settings that replace every preset's (e.g. rain_free, jpeg_share).
        holdout: rain families left out of `presets` (one name, several, or None / "none").
    """

    has_rain = True

    def __init__(
        self,
        presets: Sequence[str] = ("light", "heavy"),
        patch_size: int = 128,
        tile_stride: int = 64,
        augment: Augment = "d4",
        seed: int = 0,
        photos: Sequence[str] | None = None,
        limit: int | None = None,
        rain: Mapping[str, Any] | None = None,
        holdout: Sequence[str] | str | None = (),
    ) -> None:
        if not presets:
            raise ValueError("a synthetic training set needs at least one rain preset")
        self.presets = expand_presets(presets, holdout)
        self.generators = [
            SyntheticRain(rain_config(name, **(rain or {})), seed) for name in self.presets
        ]
        self.patch_size = patch_size
        self.tile_stride = tile_stride
        self.seed = seed
        self.photo_names = tuple(photos) if photos is not None else photo_names("train")
        tiles = [
            (name, row, col)
            for name in self.photo_names
            for row, col in _tile_centres(photo_size(name), tile_stride)
        ]
        self.tiles = evenly_spaced(tiles, limit)
        self.transform = PairTransform(augment)

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, key: int | TrainKey) -> Item:
        key = _as_train_key(key, self.patch_size)
        name, row, col = self.tiles[key.index]
        rng = np.random.default_rng([self.seed, _STAGE_KEYS["train"], key.index, key.epoch])
        jitter = rng.integers(-(self.tile_stride // 2), self.tile_stride // 2 + 1, size=2)
        clean = crop_around(load_photo(name), row + jitter[0], col + jitter[1], key.patch_size)
        generator = self.generators[int(rng.integers(len(self.generators)))]
        sample = generator.render(clean, rng, quantize=True)
        seed = int(rng.integers(2**31))
        rainy, clean, rain = self.transform(
            sample.rainy, sample.clean, sample.rain, key.patch_size, seed
        )
        return to_item(rainy, clean, rain, f"{_photo_label(name)}_{row}_{col}")


class SyntheticEvalDataset(Dataset):
    """Whole bundled photos of one split with fixed synthetic rain, for validation or testing.

    Each photo (downscaled so its longest side is at most `max_side`) appears `draws` times with
    different rain; item i always carries the same rain for a given seed. Images are 8-bit exact,
    as if read back from PNG files.

    Args:
        split: "val" or "test" photos of `PHOTO_SPLITS` ("train" is allowed for inspection);
            it also keys the rain draws, so validation and test rain differ.
        preset: the rain preset.
        draws: rain draws per photo.
        max_side: longest side of the evaluated images in pixels.
        seed: the data seed.
        rain: `RainConfig` settings that replace the preset's (e.g. jpeg_share=1).
        photos: the photos instead of the split's: bundled names or photo file paths.
    """

    has_rain = True

    def __init__(
        self,
        split: Split,
        preset: str = "light",
        draws: int = 1,
        max_side: int = 512,
        seed: int = 0,
        rain: Mapping[str, Any] | None = None,
        photos: Sequence[str] | None = None,
    ) -> None:
        if draws < 1:
            raise ValueError(f"draws must be at least 1, got {draws}")
        self.split = split
        self.preset = preset
        self.generator = SyntheticRain(rain_config(preset, **(rain or {})), seed)
        self.photo_names = tuple(photos) if photos is not None else photo_names(split)
        self.draws = draws
        self.max_side = max_side

    def __len__(self) -> int:
        return len(self.photo_names) * self.draws

    def __getitem__(self, index: int) -> Item:
        photo_index, draw = divmod(index, self.draws)
        name = self.photo_names[photo_index]
        clean = fit_longest_side(load_photo(name), self.max_side)
        stage = _STAGE_KEYS.get(self.split, _STAGE_KEYS["test"])
        sample = self.generator(clean, (stage, photo_index, draw), quantize=True)
        return to_item(
            sample.rainy, sample.clean, sample.rain, f"{_photo_label(name)}_{self.preset}_{draw}"
        )


def evenly_spaced(items: Sequence, limit: int | None) -> list:
    """At most `limit` items spread over the whole sequence (all of them when limit is None)."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    picks = np.unique(np.linspace(0, len(items) - 1, limit).round().astype(int))
    return [items[i] for i in picks]


def _photo_label(name: str) -> str:
    """A photo's name in item names: a bundled photo's name, or a photo file's stem."""
    return Path(name).stem if is_photo_path(name) else name


def _as_train_key(key: int | TrainKey, patch_size: int) -> TrainKey:
    """A plain index (no progressive batch sampler) means epoch 0 at the default patch size."""
    return key if isinstance(key, TrainKey) else TrainKey(int(key), 0, patch_size)


def _item_seed(seed: int, key: TrainKey) -> int:
    rng = np.random.default_rng([seed, _STAGE_KEYS["train"], key.index, key.epoch])
    return int(rng.integers(2**31))


def _tile_centres(shape: tuple[int, int], stride: int) -> list[tuple[int, int]]:
    rows = range(stride // 2, shape[0], stride)
    cols = range(stride // 2, shape[1], stride)
    return [(row, col) for row in rows for col in cols]


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
