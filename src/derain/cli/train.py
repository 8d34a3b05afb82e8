"""`derain-train`: train (and test) a deraining model from the Hydra config tree in conf/.

derain-train --help                  # config groups and options
derain-train experiment=demo         # the CPU demo on built-in synthetic rain
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from derain.paths import config_dir


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="train")
def _app(cfg: DictConfig) -> float | None:
    from derain.training import train

    result = train(cfg)
    paths = result.get("paths", {})
    if paths:
        print("results:", paths.get("markdown"))
        print("panel:  ", paths.get("panel"))
    print("run folder:", result["output_dir"])
    # sweepers (Optuna) optimise the returned value
    value = result["metrics"].get(cfg.optimized_metric)
    return None if value is None else float(value)


def main() -> None:
    _app()


if __name__ == "__main__":
    main()
