"""Which files a prediction run reads and writes: inputs from a file, folder or glob, their output
paths (mirroring sub-folders), checks that no input is ever overwritten, and atomic writes."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from derain.data.io import IMAGE_EXTENSIONS, is_image_file, write_image
from derain.inference.atomic import replacing

_LISTED = 5  # clashing files named in an error before "... and N more"


@dataclass(frozen=True)
class PredictJob:
    """One input image and the files derived from it.

    relative: the input's path below the input folder (or glob root), mirrored under the output.
    rain: where the rain layer goes (`save_rain`), else None.
    """

    source: Path
    relative: Path
    output: Path
    rain: Path | None = None

    def outputs(self) -> list[Path]:
        return [self.output] if self.rain is None else [self.output, self.rain]


def find_images(
    spec: str | os.PathLike, recursive: bool = False, exclude: str | os.PathLike | None = None
) -> list[tuple[Path, Path]]:
    """(path, path relative to its root) of the images `spec` names, sorted.

    `spec` is an image file (its folder is the root), a folder (its images; with `recursive`,
    those of its sub-folders too) or a glob such as `shots/*.jpg` or `shots/**/*.png` (`**`
    spans folders; the root is the part before the first wildcard). Folders and globs yield only
    files with an image suffix (`derain.data.io.IMAGE_EXTENSIONS`), hidden files excluded, and
    none under `exclude` (an output folder inside the input folder holds earlier results).

    Raises:
        FileNotFoundError: `spec` is no file or folder and matches nothing as a glob.
        ValueError: a folder holds no images.
    """
    spec = os.fspath(spec)
    path = Path(spec).expanduser()
    # plan_jobs refuses an output that *is* the input folder; only a sub-folder is left out here
    if exclude is not None and Path(exclude).resolve() in (
        path.resolve(),
        _glob_root(path).resolve(),
    ):
        exclude = None
    if path.is_file():
        return [(path, Path(path.name))]
    if path.is_dir():
        candidates = path.rglob("*") if recursive else path.iterdir()
        found = sorted(
            p for p in candidates if p.is_file() and is_image_file(p) and not _under(p, exclude)
        )
        if not found:
            hint = "" if recursive else "; add recursive=true to search its sub-folders"
            raise ValueError(
                f"input={spec} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}){hint}"
            )
        return [(p, p.relative_to(path)) for p in found]
    if glob.has_magic(spec):
        root = _glob_root(path)
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if is_image_file(p))
        found = [p for p in found if p.is_file() and not _under(p, exclude)]
        if found:
            return [(p, p.relative_to(root)) for p in found]
    raise FileNotFoundError(
        f"input={spec}: no such file or folder, and no image file matches it as a glob"
    )


def plan_jobs(
    images: list[tuple[Path, Path]],
    output_dir: str | os.PathLike,
    format: str = "png",
    save_rain: bool = False,
) -> list[PredictJob]:
    """Output paths for `find_images`' result: `output_dir/<relative folder>/<stem>.<format>`
    (and `<stem>_rain.<format>`), after checking that the run cannot damage its inputs.

    Raises:
        ValueError: the format is not an image format; `output_dir` is a file, an input folder
            or an input file; an output would replace an input; two inputs map to one output.
    """
    suffix = "." + format.lower().lstrip(".")
    if suffix not in IMAGE_EXTENSIONS:
        formats = ", ".join(sorted(s.lstrip(".") for s in IMAGE_EXTENSIONS))
        raise ValueError(f"format={format} is not an image format: use one of {formats}")
    output_dir = Path(output_dir).expanduser()
    if output_dir.is_file():
        raise ValueError(f"output={output_dir} is a file: give a folder for the derained images")
    resolved_output = output_dir.resolve()
    input_roots = {_root_of(path, relative) for path, relative in images}
    if resolved_output in input_roots:
        raise ValueError(
            f"output={output_dir} is the input folder: the derained images would mix with (or "
            "replace) the originals; choose another folder, e.g. output=derained"
        )
    jobs = [
        PredictJob(
            source=path,
            relative=relative,
            output=output_dir / relative.parent / f"{relative.stem}{suffix}",
            rain=output_dir / relative.parent / f"{relative.stem}_rain{suffix}"
            if save_rain
            else None,
        )
        for path, relative in images
    ]
    inputs = {path.resolve(): path for path, _ in images}
    replaced = [
        f"{out} (input {inputs[out.resolve()]})"
        for job in jobs
        for out in job.outputs()
        if out.resolve() in inputs
    ]
    if replaced:
        raise ValueError(
            f"output={output_dir} would overwrite input files: {_listing(replaced)}; choose "
            "another output folder or format"
        )
    claimed: dict[Path, Path] = {}
    clashes = []
    for job in jobs:
        for out in job.outputs():
            if out in claimed:
                clashes.append(f"{claimed[out]} and {job.source} → {out}")
            claimed[out] = job.source
    if clashes:
        raise ValueError(
            f"two inputs would write the same output: {_listing(clashes)}; rename one of them "
            "(outputs are named after the input without its extension)"
        )
    return jobs


def write_image_atomically(path: str | os.PathLike, array: np.ndarray) -> None:
    """`derain.data.io.write_image` into a hidden temporary file next to `path`, then renamed
    over it, so an interrupted run never leaves a half-written image under the final name."""
    with replacing(path) as partial:
        write_image(partial, array)


def _glob_root(pattern: Path) -> Path:
    """The folders of `pattern` before its first wildcard (`a/b/*/c.png` → `a/b`)."""
    parts = []
    for part in pattern.parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _under(path: Path, folder: str | os.PathLike | None) -> bool:
    return folder is not None and Path(folder).resolve() in path.resolve().parents


def _root_of(path: Path, relative: Path) -> Path:
    """The resolved folder that `relative` is relative to."""
    root = path
    for _ in relative.parts:
        root = root.parent
    return root.resolve()


def _listing(items: list[str]) -> str:
    more = len(items) - _LISTED
    return ", ".join(items[:_LISTED]) + (f" ... and {more} more" if more > 0 else "")
