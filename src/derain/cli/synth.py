"""`derain-synth`: write a synthetic rain data set to disk.

    derain-synth output=data/synth_light
    derain-synth output=data/synth_heavy preset=heavy count=500 size=256 layout=jorder seed=1
    derain-synth output=data/synth_jpeg 'rain={jpeg_share: 1, jpeg_quality: [80, 80]}'
    derain-synth output=data/synth_screen preset=screen photos=/data/my_photos

The task is `derain.data.synthetic_set.run`; the files are described there.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from derain.cli import refuse_renamed, run_task
from derain.data.synthetic_set import OutputFolderNotEmptyError, run
from derain.paths import config_dir


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="synth")
def _app(cfg: DictConfig) -> None:
    errors = (OutputFolderNotEmptyError, ValueError, FileNotFoundError)
    params = run_task("synth", run, cfg, errors=errors)
    print(
        f"wrote {cfg.count} {cfg.preset} rain pairs of {cfg.size}×{cfg.size} px to "
        f"{params.parent} ({cfg.layout} layout, parameters in {params.name})"
    )


def main() -> None:
    refuse_renamed("synth")
    _app()


if __name__ == "__main__":
    main()
