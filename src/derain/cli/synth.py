"""`derain-synth`: write a synthetic rain data set to disk.

    derain-synth out=data/synth_light
    derain-synth out=data/synth_heavy preset=heavy n=500 size=256 layout=jorder seed=1
    derain-synth out=data/synth_jpeg 'rain={jpeg_share: 1, jpeg_quality: [80, 80]}'
    derain-synth out=data/synth_screen preset=screen photos=/data/my_photos

Options are in conf/synth.yaml; the files are described in `derain.data.synthetic_set`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from derain.data.synthetic_set import OutputFolderNotEmptyError, write_synthetic_set
from derain.paths import config_dir


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="synth")
def main(cfg: DictConfig) -> None:
    """Entry point of `derain-synth` (Hydra app; key=value overrides)."""
    try:
        params = write_synthetic_set(
            out=cfg.out,
            preset=cfg.preset,
            count=cfg.n,
            size=cfg.size,
            layout=cfg.layout,
            split=cfg.split,
            seed=cfg.seed,
            overwrite=cfg.overwrite,
            rain=OmegaConf.to_container(cfg.rain) if cfg.rain is not None else None,
            photos=cfg.photos,
        )
    except (OutputFolderNotEmptyError, ValueError, FileNotFoundError) as err:
        raise SystemExit(f"derain-synth: {err}") from None
    print(
        f"wrote {cfg.n} {cfg.preset} rain pairs of {cfg.size}×{cfg.size} px to {params.parent} "
        f"({cfg.layout} layout, parameters in {params.name})"
    )


if __name__ == "__main__":
    main()
