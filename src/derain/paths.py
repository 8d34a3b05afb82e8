"""Where the project's Hydra configs live, for the repository checkout and the installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> Path:
    """Absolute path of the `conf/` tree.

    An editable install (the Makefile's) uses the repository's `conf/`; a wheel carries a copy at
    `derain/conf`.
    """
    for candidate in (_PACKAGE_DIR.parents[1] / "conf", _PACKAGE_DIR / "conf"):
        if (candidate / "model").is_dir():
            return candidate
    raise FileNotFoundError(
        f"derain's config tree was not found next to {_PACKAGE_DIR}: expected "
        f"{_PACKAGE_DIR.parents[1] / 'conf'} (checkout) or {_PACKAGE_DIR / 'conf'} (wheel)"
    )
