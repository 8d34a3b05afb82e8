"""`derain-train`: train (and test) a deraining model from the Hydra config tree in conf/.

derain-train --help                  # config groups and options
derain-train experiment=demo         # the CPU demo on built-in synthetic rain

The task is `derain.training.tasks.run`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from derain.cli import refuse_renamed
from derain.paths import config_dir


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="train")
def _app(cfg: DictConfig) -> float | None:
    from derain.training.tasks import run  # Lightning loads after the config is read

    result = run(cfg)
    paths = result.get("paths", {})
    if paths:
        print("results:", paths.get("markdown"))
        print("panel:  ", paths.get("panel"))
    print("run folder:", result["output_dir"])
    return result["optimized"]  # what sweepers (Optuna) optimise


def main() -> None:
    refuse_renamed("train")
    _app()


if __name__ == "__main__":
    main()
