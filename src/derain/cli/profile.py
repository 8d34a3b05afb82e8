"""`derain-profile`: parameters, GMACs, latency, peak memory and efficiency of ELF presets.

derain-profile                        # the presets listed in conf/profile.yaml
derain-profile model=elf size=512     # one model; model.* and model/ablation=NAME apply

The task is `derain.studies.profile.run`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from derain.cli import make_console, refuse_renamed
from derain.paths import config_dir
from derain.studies.profile import run


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="profile")
def _app(cfg: DictConfig) -> None:
    run(cfg, make_console())


def main() -> None:
    refuse_renamed("profile")
    _app()


if __name__ == "__main__":
    main()
