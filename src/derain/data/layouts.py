"""Finding rainy/clean pairs in the folder layouts deraining data sets are distributed in.

Each layout of docs/datasets.md is one `Layout` in `LAYOUTS` (in the order auto-detection tries
them). Files are paired by name, following each release's naming rule, never by sorted position.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from derain.data.io import IMAGE_EXTENSIONS, is_image_file, read_image_size
from derain.data.pairs import (
    DatasetLayoutError,
    DatasetNotFoundError,
    Pair,
    RainySide,
    SkippedFilesWarning,
    check_pair_sizes,
)

RAIN_LAYER_FOLDER = "rain_layer"
"""Optional folder, next to a layout's rainy and clean folders, holding each pair's rain layer
under the rainy image's stem (written by `derain-synth`)."""

FOLDER_PAIRS: tuple[tuple[str, str], ...] = (
    ("input", "target"),
    ("input", "gt"),
    ("rainy", "gt"),
    ("rainy", "clean"),
    ("rainy", "norain"),
    ("rain", "norain"),
    ("rain", "gt"),
    ("rain", "clean"),
    ("lq", "gt"),
    ("lq", "hq"),
)
"""(rainy, clean) folder names of the generic layout; folder names match in any case."""

SIDE_BY_SIDE_MIN_ASPECT = 1.5
"""Auto-detection takes a flat folder for side-by-side pairs only when every image is at least
this many times wider than tall (two pictures of ordinary shape next to each other)."""

_ERROR_EXAMPLES = 3
_SIDE_BY_SIDE_DETECT_SAMPLE = 32

Key = int | str


@dataclass
class _Scan:
    """Lists the image files of folders and remembers the other files it skipped."""

    skipped: list[Path] = field(default_factory=list)

    def images(self, folder: Path) -> list[Path]:
        if not folder.is_dir():
            if folder.exists():
                raise DatasetLayoutError(f"{folder} is a file: expected a folder of images")
            raise DatasetNotFoundError(f"folder {folder} does not exist")
        found = []
        for entry in sorted(folder.iterdir()):
            if entry.is_dir():
                continue
            if is_image_file(entry):
                found.append(entry)
            else:
                self.skipped.append(entry)
        if not found:
            raise DatasetLayoutError(
                f"no images in {folder}: expected files ending in {_extensions_text()}"
            )
        return found


@dataclass(frozen=True)
class Layout:
    """One way a data set lies on disk.

    Attributes:
        name: the value of `find_pairs(layout=...)` and of the `layout` config keys.
        expected: what the layout looks like, in words, for error messages.
        detect: whether a folder (or list file) looks like this layout; must not raise.
        find: lists the pairs of a root; raises `DatasetLayoutError` naming what is wrong.
    """

    name: str
    expected: str
    detect: Callable[[Path], bool]
    find: Callable[[Path, _Scan, RainySide], list[Pair]]


def find_pairs(
    root: str | os.PathLike,
    layout: str = "auto",
    rainy_side: RainySide = "left",
    check_images: bool = True,
) -> list[Pair]:
    """All rainy/clean pairs of a data set, sorted by rainy file name (numbers in natural order).

    Args:
        root: the data set folder, or for the "spa_list" layout the list file.
        layout: a name in `LAYOUTS`, or "auto" to recognise it (see `detect_layout`).
        rainy_side: for side-by-side files, which half is rainy ("left" or "right").
        check_images: read every image header now so that unreadable files and pairs of
            different sizes stop the run here, not in the middle of an epoch.

    Files that are not images (Thumbs.db, .DS_Store, README...) are skipped with one
    `SkippedFilesWarning`; pairs differing by a few pixels draw one `SizeMismatchWarning`.

    Raises:
        DatasetNotFoundError: `root` (or a file named in a list) does not exist.
        DatasetLayoutError: nothing matches, an image has no partner, a name breaks the layout's
            rule, or a pair's sizes differ too much; the message names the file and the rule.
        ImageReadError: an image header cannot be read (with `check_images`).
        ValueError: unknown `layout` or `rainy_side`.
    """
    root = Path(root).expanduser()
    if rainy_side not in ("left", "right"):
        raise ValueError(f"rainy_side must be 'left' or 'right', got {rainy_side!r}")
    if not root.exists():
        raise DatasetNotFoundError(f"{root} does not exist: expected a data set folder or list")
    chosen = LAYOUTS[detect_layout(root)] if layout == "auto" else layout_named(layout)
    scan = _Scan()
    pairs = chosen.find(root, scan, rainy_side)
    if not pairs:
        raise DatasetLayoutError(f"no rainy/clean pairs under {root}: expected {chosen.expected}")
    if scan.skipped:
        names = ", ".join(path.name for path in scan.skipped[:_ERROR_EXAMPLES])
        more = len(scan.skipped) - _ERROR_EXAMPLES
        warnings.warn(
            f"skipped {len(scan.skipped)} file(s) that are not images under {root}: {names}"
            + (f" and {more} more" if more > 0 else ""),
            SkippedFilesWarning,
            stacklevel=2,
        )
    pairs.sort(key=lambda pair: (_natural_key(str(pair.rainy)), pair.rainy_half or ""))
    if check_images:
        check_pair_sizes(pairs)
    return pairs


def detect_layout(root: str | os.PathLike) -> str:
    """Name of the first layout in `LAYOUTS` that `root` looks like.

    Raises:
        DatasetNotFoundError: `root` does not exist.
        DatasetLayoutError: `root` is empty or matches no layout; the message lists them all.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetNotFoundError(f"{root} does not exist: expected a data set folder or list")
    if root.is_dir() and not any(not entry.name.startswith(".") for entry in root.iterdir()):
        raise DatasetLayoutError(f"{root} is empty: expected {_all_expected()}")
    for layout in LAYOUTS.values():
        if layout.detect(root):
            return layout.name
    raise DatasetLayoutError(f"no rainy/clean pairs under {root}: expected {_all_expected()}")


def layout_named(name: str) -> Layout:
    """The `Layout` called `name`; a ValueError lists the valid names otherwise."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(
            f"unknown data set layout {name!r}: expected 'auto' or one of {', '.join(LAYOUTS)}"
        ) from None


# ---------------------------------------------------------------------------------------------
# Pairing by key


def _index(files: Iterable[Path], key_of: Callable[[str], Key | None], rule: str) -> dict:
    """Map each file's key (from its stem) to the file; two files with one key are an error."""
    index: dict[Key, Path] = {}
    for path in files:
        key = key_of(path.stem)
        if key is None:
            raise DatasetLayoutError(f"{path} does not follow the naming rule {rule}")
        if key in index:
            raise DatasetLayoutError(
                f"{index[key]} and {path} are both image {key!r} under the rule {rule}; "
                "keep one of them"
            )
        index[key] = path
    return index


def _join(
    rainy: Iterable[tuple[Key, Path]],
    clean: dict[Key, Path],
    rain: dict[Key, Path],
    clean_expected: str,
    rainy_expected: str,
) -> list[Pair]:
    """Pair rainy and clean files with equal keys (several rainy files may share a clean one).

    `clean_expected` / `rainy_expected` say where a missing partner should be, `{key}` standing
    for the key; every file must find a partner.
    """
    rainy = list(rainy)
    used = {key for key, _ in rainy}
    checks = (
        (
            "rainy image(s) have no clean partner",
            [i for i in rainy if i[0] not in clean],
            clean_expected,
        ),
        (
            "clean image(s) have no rainy partner",
            [i for i in clean.items() if i[0] not in used],
            rainy_expected,
        ),
        (
            "rain layer(s) belong to no pair",
            [i for i in rain.items() if i[0] not in used],
            rainy_expected,
        ),
    )
    for problem, lonely, expected in checks:
        if lonely:
            examples = "; ".join(
                f"{path} (expected {expected.format(key=key)})"
                for key, path in lonely[:_ERROR_EXAMPLES]
            )
            raise DatasetLayoutError(f"{len(lonely)} {problem}, e.g. {examples}")
    return [Pair(rainy=path, clean=clean[key], rain=rain.get(key)) for key, path in rainy]


def _numbered(pattern: str) -> Callable[[str], int | None]:
    """Key function: the integer captured by `pattern` (whole stem, any case), else None."""
    regex = re.compile(pattern, re.IGNORECASE)

    def key_of(stem: str) -> int | None:
        match = regex.fullmatch(stem)
        return int(match.group(1)) if match else None

    return key_of


def _same_stem(stem: str) -> str:
    return stem


def _stem_without_gt(stem: str) -> str:
    return re.sub(r"_?gt$", "", stem, flags=re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# Folder helpers


def _child(folder: Path, name: str) -> Path | None:
    """The sub-folder of `folder` called `name` in any case, or None."""
    if not folder.is_dir():
        return None
    exact = folder / name
    if exact.is_dir():
        return exact
    return next(
        (entry for entry in folder.iterdir() if entry.is_dir() and entry.name.lower() == name),
        None,
    )


def _flat_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder` (empty for a file or a missing folder)."""
    if not folder.is_dir():
        return []
    return sorted(entry for entry in folder.iterdir() if entry.is_file() and is_image_file(entry))


def _any_stem_matches(files: Iterable[Path], key_of: Callable[[str], Key | None]) -> bool:
    return any(key_of(path.stem) is not None for path in files)


def _rain_layers(folder: Path, scan: _Scan) -> dict[Key, Path]:
    """Rain layers of `folder/rain_layer/` by stem; empty when there is no such folder."""
    layer_dir = _child(folder, RAIN_LAYER_FOLDER)
    if layer_dir is None:
        return {}
    return _index(scan.images(layer_dir), _same_stem, f"{RAIN_LAYER_FOLDER}/<rainy image's name>")


def _pairs_from_folders(
    base: Path,
    rainy_name: str,
    clean_name: str,
    scan: _Scan,
    clean_key: Callable[[str], Key] = _same_stem,
) -> list[Pair]:
    """Pairs of `base/<rainy_name>/X` and `base/<clean_name>/X` (any suffix on either side)."""
    rainy_dir, clean_dir = _child(base, rainy_name), _child(base, clean_name)
    if rainy_dir is None or clean_dir is None:
        raise DatasetLayoutError(
            f"expected folders {rainy_name}/ and {clean_name}/ under {base}, found "
            f"{sorted(entry.name for entry in base.iterdir() if entry.is_dir()) or 'none'}"
        )
    rule = f"{rainy_name}/NAME ↔ {clean_name}/NAME"
    return _join(
        _index(scan.images(rainy_dir), _same_stem, rule).items(),
        _index(scan.images(clean_dir), clean_key, rule),
        _rain_layers(base, scan),
        clean_expected=f"{clean_dir}/{{key}}.*",
        rainy_expected=f"{rainy_dir}/{{key}}.*",
    )


# ---------------------------------------------------------------------------------------------
# The layouts


def _rain13k_base(root: Path) -> Path | None:
    train = _child(root, "train")
    for base in (root, _child(train, "rain13k") if train else None):
        if base is not None and _child(base, "input") and _child(base, "target"):
            return base
    return None


def _find_rain13k(root: Path, scan: _Scan, rainy_side: RainySide) -> list[Pair]:
    base = _rain13k_base(root)
    if base is None:
        raise DatasetLayoutError(f"no rainy/clean pairs under {root}: expected {RAIN13K.expected}")
    return _pairs_from_folders(base, "input", "target", scan)


RAIN13K = Layout(
    name="rain13k",
    expected="input/NAME ↔ target/NAME (or train/Rain13K/input|target under the release root)",
    detect=lambda root: _rain13k_base(root) is not None,
    find=_find_rain13k,
)

_RAIN_N = _numbered(r"rain-(\d+)")
_NORAIN_N = _numbered(r"norain-(\d+)")
_RAINSTREAK_N = _numbered(r"rainstreak-(\d+)")


def _split_flat(
    root: Path, scan: _Scan, rules: dict[str, Callable[[str], Key | None]]
) -> dict[str, dict[Key, Path]]:
    """Index the images of a flat folder by the naming rule (name → key function) each follows;
    an image that follows none is an error."""
    groups: dict[str, list[Path]] = {rule: [] for rule in rules}
    for path in scan.images(root):
        rule = next((rule for rule, key_of in rules.items() if key_of(path.stem) is not None), None)
        if rule is None:
            raise DatasetLayoutError(
                f"{path} does not follow the naming rules of {root}: expected {', '.join(rules)}"
            )
        groups[rule].append(path)
    return {rule: _index(groups[rule], rules[rule], rule) for rule in rules}


def _find_jorder(root: Path, scan: _Scan, rainy_side: RainySide) -> list[Pair]:
    rainy_dir = _child(root, "rainy")
    if rainy_dir is None:
        raise DatasetLayoutError(f"no rainy/ folder under {root}: expected {JORDER.expected}")
    groups = _split_flat(root, scan, {"norain-N": _NORAIN_N, "rainstreak-N": _RAINSTREAK_N})
    return _join(
        _index(scan.images(rainy_dir), _RAIN_N, "rainy/rain-N").items(),
        groups["norain-N"],
        groups["rainstreak-N"],
        clean_expected=f"{root}/norain-{{key}}.*",
        rainy_expected=f"{rainy_dir}/rain-{{key}}.*",
    )


JORDER = Layout(
    name="jorder",
    expected="rainy/rain-N ↔ norain-N one folder up, optional rainstreak-N (Rain100L/H)",
    detect=lambda root: (
        _child(root, "rainy") is not None and _any_stem_matches(_flat_images(root), _NORAIN_N)
    ),
    find=_find_jorder,
)


def _find_raintrain(root: Path, scan: _Scan, rainy_side: RainySide) -> list[Pair]:
    rules = {"rain-N": _RAIN_N, "norain-N": _NORAIN_N, "rainstreak-N": _RAINSTREAK_N}
    groups = _split_flat(root, scan, rules)
    return _join(
        groups["rain-N"].items(),
        groups["norain-N"],
        groups["rainstreak-N"],
        clean_expected=f"{root}/norain-{{key}}.*",
        rainy_expected=f"{root}/rain-{{key}}.*",
    )


RAINTRAIN = Layout(
    name="raintrain",
    expected="rain-N ↔ norain-N in one folder, optional rainstreak-N (RainTrainL/H)",
    detect=lambda root: (
        _any_stem_matches(_flat_images(root), _RAIN_N)
        and _any_stem_matches(_flat_images(root), _NORAIN_N)
    ),
    find=_find_raintrain,
)

# Rain200 rainy files are "norain-12x2" in rain/X2/ (the ×2 marks the rain rendering, not a size)
_RAIN200_RAINY_N = _numbered(r"(?:no)?rain-(\d+)(?:x2)?")


def _find_rain200(root: Path, scan: _Scan, rainy_side: RainySide) -> list[Pair]:
    rain_dir, clean_dir = _child(root, "rain"), _child(root, "norain")
    if rain_dir is None or clean_dir is None:
        raise DatasetLayoutError(f"no rain/ and norain/ under {root}: expected {RAIN200.expected}")
    rainy_dir = _child(rain_dir, "x2") or rain_dir
    return _join(
        _index(scan.images(rainy_dir), _RAIN200_RAINY_N, "rain/X2/norain-Nx2").items(),
        _index(scan.images(clean_dir), _NORAIN_N, "norain/norain-N"),
        {},
        clean_expected=f"{clean_dir}/norain-{{key}}.*",
        rainy_expected=f"{rainy_dir}/norain-{{key}}x2.*",
    )


def _looks_rain200(root: Path) -> bool:
    clean_dir = _child(root, "norain")
    return (
        _child(root, "rain") is not None
        and clean_dir is not None
        and _any_stem_matches(_flat_images(clean_dir), _NORAIN_N)
    )


RAIN200 = Layout(
    name="rain200",
    expected="rain/X2/norain-Nx2 (or rain/norain-Nx2) ↔ norain/norain-N (Rain200L/H)",
    detect=_looks_rain200,
    find=_find_rain200,
)

_DDN_RAINY = re.compile(r"(\d+)_(\d+)")
_DDN_CLEAN = _numbered(r"(\d+)")


def _find_rain1400(root: Path, scan: _Scan, rainy_side: RainySide) -> list[Pair]:
    rainy_dir, clean_dir = _child(root, "rainy_image"), _child(root, "ground_truth")
    if rainy_dir is None or clean_dir is None:
        raise DatasetLayoutError(f"no pairs under {root}: expected {RAIN1400.expected}")
    rainy: list[tuple[Key, Path]] = []
    for path in scan.images(rainy_dir):
        match = _DDN_RAINY.fullmatch(path.stem)
        if match is None:
            raise DatasetLayoutError(f"{path} does not follow the naming rule rainy_image/N_K")
        rainy.append((int(match.group(1)), path))
    return _join(
        rainy,
        _index(scan.images(clean_dir), _DDN_CLEAN, "ground_truth/N"),
        {},
        clean_expected=f"{clean_dir}/{{key}}.*",
        rainy_expected=f"{rainy_dir}/{{key}}_K.* (K = 1..14)",
    )


RAIN1400 = Layout(
    name="rain1400",
    expected="rainy_image/N_K ↔ ground_truth/N, several rainy per clean (Rain1400/DDN)",
    detect=lambda root: (
        _child(root, "rainy_image") is not None and _child(root, "ground_truth") is not None
    ),
    find=_find_rain1400,
)


def _spa_test_clean_dir(root: Path) -> Path | None:
    return _child(root, "gt") or _child(root, "norain")


def _find_spa_test(root: Path, scan: _Scan, rainy_side: RainySide) -> list[Pair]:
    clean_dir = _spa_test_clean_dir(root)
    if _child(root, "rain") is None or clean_dir is None:
        raise DatasetLayoutError(f"no pairs under {root}: expected {SPA_TEST.expected}")
    return _pairs_from_folders(root, "rain", clean_dir.name, scan, clean_key=_stem_without_gt)


SPA_TEST = Layout(
    name="spa_test",
    expected="rain/NAME ↔ gt/NAMEgt or norain/NAME (SPA-Data real_test_1000)",
    detect=lambda root: _child(root, "rain") is not None and _spa_test_clean_dir(root) is not None,
    find=_find_spa_test,
)


def _present_folder_pairs(root: Path) -> list[tuple[str, str]]:
    return [(r, c) for r, c in FOLDER_PAIRS if _child(root, r) and _child(root, c)]


def _find_paired(root: Path, scan: _Scan, rainy_side: RainySide) -> list[Pair]:
    present = _present_folder_pairs(root)
    if not present:
        raise DatasetLayoutError(f"no pairs under {root}: expected {PAIRED.expected}")
    if len(present) > 1:
        found = ", ".join(f"{r}/+{c}/" for r, c in present)
        raise DatasetLayoutError(
            f"{root} holds several rainy/clean folder pairs ({found}): point the root at a folder "
            "with exactly one pair, or pass layout= one of the named layouts"
        )
    rainy_name, clean_name = present[0]
    return _pairs_from_folders(root, rainy_name, clean_name, scan)


PAIRED = Layout(
    name="paired",
    expected="a pair of folders with equal file stems: "
    + ", ".join(f"{r}/+{c}/" for r, c in FOLDER_PAIRS),
    detect=lambda root: bool(_present_folder_pairs(root)),
    find=_find_paired,
)

_RAIN12_RAINY = re.compile(r"(.+)_in", re.IGNORECASE)
_RAIN12_CLEAN = re.compile(r"(.+)_gt", re.IGNORECASE)


def _rain12_key(regex: re.Pattern) -> Callable[[str], str | None]:
    def key_of(stem: str) -> str | None:
        match = regex.fullmatch(stem)
        return match.group(1) if match else None

    return key_of


def _find_rain12(root: Path, scan: _Scan, rainy_side: RainySide) -> list[Pair]:
    rainy_key, clean_key = _rain12_key(_RAIN12_RAINY), _rain12_key(_RAIN12_CLEAN)
    groups = _split_flat(root, scan, {"NAME_in": rainy_key, "NAME_GT": clean_key})
    return _join(
        groups["NAME_in"].items(),
        groups["NAME_GT"],
        {},
        clean_expected=f"{root}/{{key}}_GT.*",
        rainy_expected=f"{root}/{{key}}_in.*",
    )


RAIN12 = Layout(
    name="rain12",
    expected="NAME_in ↔ NAME_GT in one folder (Rain12)",
    detect=lambda root: _any_stem_matches(_flat_images(root), _rain12_key(_RAIN12_RAINY)),
    find=_find_rain12,
)


def _looks_side_by_side(root: Path) -> bool:
    images = _flat_images(root)
    if not images or any(e.is_dir() and not e.name.startswith(".") for e in root.iterdir()):
        return False
    try:
        sizes = [read_image_size(path) for path in images[:_SIDE_BY_SIDE_DETECT_SAMPLE]]
    except (OSError, ValueError):
        return False
    return all(width >= SIDE_BY_SIDE_MIN_ASPECT * height for height, width in sizes)


def _find_side_by_side(root: Path, scan: _Scan, rainy_side: RainySide) -> list[Pair]:
    return [Pair(rainy=path, clean=path, rainy_half=rainy_side) for path in scan.images(root)]


SIDE_BY_SIDE = Layout(
    name="side_by_side",
    expected="one image per pair, rainy and clean halves side by side (Rain800, DID-MDN "
    "Test1200); set rainy_side= to the rainy half",
    detect=_looks_side_by_side,
    find=_find_side_by_side,
)


def _find_spa_list(root: Path, scan: _Scan, rainy_side: RainySide) -> list[Pair]:
    if not root.is_file():
        raise DatasetLayoutError(f"{root} is not a file: expected {SPA_LIST.expected}")
    try:
        lines = root.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise DatasetLayoutError(
            f"{root} is not a text file: expected {SPA_LIST.expected}"
        ) from err
    base = root.parent
    pairs, missing = [], []
    for number, raw_line in enumerate(lines, 1):
        line = raw_line.strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise DatasetLayoutError(
                f"{root} line {number}: expected '<rainy path> <clean path>', got {line!r}"
            )
        rainy, clean = base / fields[0], base / fields[1]
        missing += [f"line {number}: {path}" for path in (rainy, clean) if not path.is_file()]
        pairs.append(Pair(rainy=rainy, clean=clean))
    if missing:
        raise DatasetNotFoundError(
            f"{len(missing)} file(s) named in {root} do not exist (paths are relative to "
            f"{base}), e.g. " + "; ".join(missing[:_ERROR_EXAMPLES])
        )
    return pairs


SPA_LIST = Layout(
    name="spa_list",
    expected="a text file with one '<rainy path> <clean path>' line per pair, paths relative "
    "to its folder (SPA-Data train)",
    detect=lambda root: root.is_file() and not is_image_file(root),
    find=_find_spa_list,
)

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        SPA_LIST,
        RAIN13K,
        JORDER,
        RAIN200,
        RAIN1400,
        SPA_TEST,
        PAIRED,
        RAINTRAIN,
        RAIN12,
        SIDE_BY_SIDE,
    )
}
"""Every known layout by name, in the order `detect_layout` tries them (most specific first)."""


def _all_expected() -> str:
    return "; ".join(f"{layout.expected} [{layout.name}]" for layout in LAYOUTS.values())


def _extensions_text() -> str:
    return "/".join(sorted(IMAGE_EXTENSIONS))


def _natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]
