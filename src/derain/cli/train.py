"""`derain-train`: train (and test) a deraining model from the Hydra config tree in conf/.

derain-train --help                  # config groups and options
derain-train experiment=demo         # the CPU demo on built-in synthetic rain
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from derain.paths import config_dir


def check_sweep_launch(cfg: DictConfig) -> None:
    """Refuses a sampler-driven sweep (Optuna) whose trials would each start DDP processes.

    Lightning starts the other processes by running the command line again; under `-m` each of
    them runs the sweep again, and a sampler proposes its trials anew there, so the processes
    would not train the same trial. Hydra's basic sweeper lists its jobs in a fixed order, so
    its sweeps (e.g. over trainer.devices) do line up.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    sweeper = str(hydra_cfg.sweeper.get("_target_", ""))
    if hydra_cfg.mode != RunMode.MULTIRUN or sweeper.endswith("BasicSweeper"):
        return
    trainer = cfg.get("trainer", {})
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    strategy = str(trainer.get("strategy", "auto"))
    if strategy.startswith("ddp") and (str(devices) not in ("1", "auto") or nodes != 1):
        raise ValueError(
            f"this sweep ({sweeper.rsplit('.', 1)[-1]}) cannot train each trial on several "
            f"processes (trainer.strategy={strategy}, trainer.devices={devices}, "
            f"trainer.num_nodes={nodes}): Lightning would start the other processes by running "
            "the sweep again. Run the trials on one device, e.g. for the demo add "
            "`trainer=cpu data.batch_size=8`."
        )


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="train")
def _app(cfg: DictConfig) -> float | None:
    from derain.training.tasks import train

    check_sweep_launch(cfg)
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
