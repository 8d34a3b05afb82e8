"""Which files a prediction run reads and writes: inputs from a file, folder or glob (and what was
left out), their output paths (mirroring sub-folders; names that never collide), and checks,
before any work, that no input is ever overwritten and that the output folder can be written.
Writing itself is `Restorer.derain_file`'s (atomic, keeping each file's format and metadata)."""

from __future__ import annotations

import glob
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from derain.image_files import IMAGE_EXTENSIONS, is_image_file

SAME_FORMAT = "same"
"""`format=` value that keeps each input's own format."""

_LISTED = 5  # clashing files named in an error before "... and N more"


@dataclass(frozen=True)
class PredictJob:
    """One input image and the files derived from it.

    relative: the input's path below the input folder (or glob root), mirrored under the output.
    rain: where the rain layer goes (`save_rain`), else None.
    renamed: the output is not named after the input's stem (another input has that stem).
    """

    source: Path
    relative: Path
    output: Path
    rain: Path | None = None
    renamed: bool = False

    def outputs(self) -> list[Path]:
        return [self.output] if self.rain is None else [self.output, self.rain]


def find_images(
    spec: str | os.PathLike, recursive: bool = False, exclude: str | os.PathLike | None = None
) -> list[tuple[Path, Path]]:
    """(path, path relative to its root) of the images `spec` names, sorted: `scan_images`'
    images without its notes."""
    return scan_images(spec, recursive, exclude).images


@dataclass(frozen=True)
class FoundImages:
    """What `scan_images` found.

    images: (path, path relative to its root), sorted.
    in_sub_folders: images in sub-folders of a folder input, left out without `recursive`.
    in_output: images under the output folder (`exclude`), left out.
    """

    images: list[tuple[Path, Path]]
    in_sub_folders: int = 0
    in_output: int = 0

    def notes(self, spec: str, exclude: str | os.PathLike | None) -> list[str]:
        """A line for each kind of image left out, saying how to take it."""
        notes = []
        if self.in_sub_folders:
            notes.append(
                f"left out {self.in_sub_folders} image(s) in sub-folders of {spec}: "
                "recursive=true derains them too"
            )
        if self.in_output:
            notes.append(
                f"left out {self.in_output} image(s) under {exclude}, the output folder inside "
                "the input (results of earlier runs are not derained again); to derain photos "
                "kept there, move them out or choose another output folder"
            )
        return notes


def scan_images(
    spec: str | os.PathLike, recursive: bool = False, exclude: str | os.PathLike | None = None
) -> FoundImages:
    """The images `spec` names, and how many were left out (see `FoundImages`).

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
        return FoundImages([(path, Path(path.name))])
    if path.is_dir():
        every = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
        excluded = [p for p in every if _under(p, exclude)]
        kept = [p for p in every if not _under(p, exclude)]
        found = kept if recursive else [p for p in kept if p.parent == path]
        if not found:
            hint = "" if recursive else "; add recursive=true to search its sub-folders"
            raise ValueError(
                f"input={spec} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}){hint}"
            )
        return FoundImages(
            [(p, p.relative_to(path)) for p in found],
            in_sub_folders=len(kept) - len(found),
            in_output=len(excluded) if recursive else 0,
        )
    if glob.has_magic(spec):
        root = _glob_root(path)
        matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if is_image_file(p))
        matches = [p for p in matches if p.is_file()]
        found = [p for p in matches if not _under(p, exclude)]
        if found:
            return FoundImages(
                [(p, p.relative_to(root)) for p in found], in_output=len(matches) - len(found)
            )
    raise FileNotFoundError(
        f"input={spec}: no such file or folder, and no image file matches it as a glob"
    )


def check_writable(output_dir: str | os.PathLike) -> None:
    """Creates `output_dir` (and its parents) and writes a test file into it, so that a folder
    the run cannot write is found before any image is derained.

    Raises:
        ValueError: naming the folder, the reason and the fix.
    """
    output_dir = Path(output_dir).expanduser()
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir, prefix=".derain-write-test-"):
            pass
    except OSError as err:
        raise ValueError(
            f"output={output_dir} cannot be written ({err.strerror or err}): choose a folder "
            "you can write to, e.g. output=derained"
        ) from None


def plan_jobs(
    images: list[tuple[Path, Path]],
    output_dir: str | os.PathLike,
    format: str | None = None,
    save_rain: bool = False,
) -> list[PredictJob]:
    """Output paths for `find_images`' result: `output_dir/<relative folder>/<stem>.<format>`
    (and `<stem>_rain.<format>`), after checking that the run cannot damage its inputs.

    `format` None (or "same") keeps each input's own format and suffix. Inputs that would
    write one output (`photo.tiff` and `photo.webp` with format=png) keep their suffix in the
    name instead (`photo.tiff.png`, `photo.webp.png`; `PredictJob.renamed`).

    Raises:
        ValueError: the format is not an image format; `output_dir` is a file, an input folder
            or an input file; an output would replace an input.
    """
    suffix = None
    if format is not None and str(format).lower() != SAME_FORMAT:
        suffix = "." + str(format).lower().lstrip(".")
        if suffix not in IMAGE_EXTENSIONS:
            formats = ", ".join(sorted(s.lstrip(".") for s in IMAGE_EXTENSIONS))
            raise ValueError(
                f"format={format} is not an image format: use {SAME_FORMAT} (each input's own) "
                f"or one of {formats}"
            )
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
    jobs = _named_jobs(images, output_dir, suffix, save_rain)
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
    return jobs


def _named_jobs(
    images: list[tuple[Path, Path]], output_dir: Path, suffix: str | None, save_rain: bool
) -> list[PredictJob]:
    """Jobs whose outputs are all distinct: named after the input's stem, or, where two inputs
    share a stem, after its whole name (then numbered, should even that be taken)."""

    def outputs(relative: Path, name: str) -> tuple[Path, Path | None]:
        own = suffix or relative.suffix
        folder = output_dir / relative.parent
        return folder / f"{name}{own}", (folder / f"{name}_rain{own}" if save_rain else None)

    first = [outputs(relative, relative.stem)[0] for _, relative in images]
    shared = {out for out in first if first.count(out) > 1}
    claimed: set[Path] = set()
    jobs = []
    for (path, relative), out in zip(images, first, strict=True):
        name = relative.stem if out not in shared else relative.name
        candidate, number = name, 1
        while any(p in claimed for p in outputs(relative, candidate) if p is not None):
            number += 1
            candidate = f"{name}-{number}"
        output, rain = outputs(relative, candidate)
        claimed.update(p for p in (output, rain) if p is not None)
        jobs.append(PredictJob(path, relative, output, rain, renamed=candidate != relative.stem))
    return jobs


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
