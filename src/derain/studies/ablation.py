"""The ablation variants of the ELF network, and training one of them in this process.

The variants are the files of `conf/model/ablation/`. An ablation *study* (many variants and
seeds) is a Hydra multirun, `derain-train -m experiment=ablation ...`, read back by
`derain.studies.results` (docs/experiments.md). `AblationStudy` composes and trains single
variants in the calling process under a `Scale` of `derain.studies.budgets` (the inspection
notebook trains its network so):

    study = AblationStudy(out_dir="logs/inspect/mine", variants=["full"], scale="smoke")
    result = study.run_variant("full")     # trains and tests it into out_dir/full
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from derain.paths import config_dir
from derain.studies.budgets import Scale, get_scale
from derain.studies.profiling import profile_model

REFERENCE = "full"  # the variant every Δ is taken against: conf/model/ablation/full.yaml


# ----------------------------------------------------------------------------- variants
def variant_names() -> list[str]:
    """The ablations of conf/model/ablation/, the reference (`full`) first, then by name."""
    names = sorted(p.stem for p in (config_dir() / "model" / "ablation").glob("*.yaml"))
    return sorted(names, key=lambda n: n != REFERENCE)


def variant_description(name: str) -> str:
    """The one-line comment of conf/model/ablation/NAME.yaml (what the variant changes)."""
    path = config_dir() / "model" / "ablation" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"unknown ablation {name!r}: no {path}; choose one of {', '.join(variant_names())}"
        )
    for line in path.read_text().splitlines():
        text = line.lstrip("#").strip()
        if line.startswith("#") and text and not text.startswith("@package"):
            return text
    return name


def run_folder(task: str, scale: str) -> Path:
    """A fresh folder logs/<task>/<scale>/<time> under the checkout (else the working folder)."""
    root = config_dir().parent
    if not (root / "pyproject.toml").is_file():  # an installed wheel: conf/ sits in the package
        root = Path.cwd()
    return root / "logs" / task / scale / time.strftime("%Y-%m-%d_%H-%M-%S")


# ----------------------------------------------------------------------------- results
@dataclass
class VariantResult:
    """One trained and tested variant.

    test: per test set, the papers' metrics of `derain.training.train` (psnr, ssim in dB / [0,1],
    input_psnr, input_ssim of the rainy input, images).
    """

    variant: str
    description: str
    switches: dict[str, Any]  # the model arguments that differ from the reference variant
    params: int
    gmacs: float
    latency_ms: float
    test: dict[str, dict[str, float]]
    steps: int
    train_seconds: float
    run_dir: str = ""
    checkpoint: str = ""

    @property
    def change(self) -> str:
        if not self.switches:
            return "(reference)"
        return ", ".join(f"{k}={_yaml_value(v)}" for k, v in self.switches.items())

    def mean(self, metric: str) -> float:
        """Unweighted mean of `metric` over the test sets (the papers' "average")."""
        return statistics.fmean(r[metric] for r in self.test.values())


# ----------------------------------------------------------------------------- the study
@dataclass
class AblationStudy:
    """Trains and tests each variant under the same budget and seed.

    Args:
        out_dir: the study's folder; each variant's run folder is out_dir/<variant>.
        variants: names of conf/model/ablation/*.yaml (None: all, `full` first).
        scale: a name of `SCALES` or a `Scale`.
        logger: the `logger` config group: csv, tensorboard, wandb, many or none.
        seed: the seed of every run (None: conf/train.yaml's).
        overrides: further Hydra overrides for every variant, e.g. ["model=elf_small",
            "trainer=gpu"], applied after the scale's.
    """

    out_dir: str | Path | None = None
    variants: Sequence[str] | None = None
    scale: str | Scale = "smoke"
    logger: str = "csv"
    seed: int | None = None
    overrides: Sequence[str] = ()
    _composed: dict[str, DictConfig] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.scale = get_scale(self.scale)
        known = variant_names()
        self.variants = list(self.variants or known)
        unknown = [v for v in self.variants if v not in known]
        if unknown:
            raise ValueError(
                f"unknown ablation(s) {', '.join(unknown)}: conf/model/ablation/ holds "
                f"{', '.join(known)}"
            )
        self.out_dir = (
            Path(self.out_dir) if self.out_dir else run_folder("ablation", self.scale.name)
        )

    # ------------------------------------------------------------------ configs
    def budget_overrides(self) -> list[str]:
        """What every variant shares: scale, seed, logger and the extra overrides."""
        shared = [*self.scale.overrides, f"logger={self.logger}", "task_name=ablation"]
        if self.logger == "none":
            shared.append("callbacks.lr_monitor=null")  # Lightning refuses it without a logger
        if self.seed is not None:
            shared.append(f"seed={self.seed}")
        return [*shared, *self.overrides]

    def overrides_for(self, variant: str) -> list[str]:
        return [
            *self.budget_overrides(),
            f"model/ablation={variant}",
            f"run_name={variant}",
            f"tags=[ablation,{self.scale.name},{variant}]",
        ]

    def compose(self, variant: str) -> DictConfig:
        """conf/train.yaml composed for `variant`, writing into out_dir/<variant> (a fresh copy
        on each call: callers may change it)."""
        if variant not in self._composed:
            with initialize_config_dir(version_base=None, config_dir=str(config_dir())):
                self._composed[variant] = compose("train", overrides=self.overrides_for(variant))
        cfg = copy.deepcopy(self._composed[variant])
        # set after composing: Hydra's override grammar would choke on some folder names
        run_dir = self.out_dir / variant
        cfg.paths.root_dir = str(self.out_dir)
        cfg.paths.output_dir = str(run_dir)
        if "wandb" in cfg.logger:
            # one W&B group per study, so its runs sit together
            cfg.logger.wandb.group = f"ablation-{self.out_dir.name}"
        return cfg

    def switches(self, variant: str) -> dict[str, Any]:
        """The model arguments of `variant` that differ from the reference's."""
        reference = OmegaConf.to_container(self.compose(REFERENCE).model, resolve=True)
        own = OmegaConf.to_container(self.compose(variant).model, resolve=True)
        return {k: v for k, v in own.items() if reference.get(k) != v}

    # ------------------------------------------------------------------ running
    def run_variant(self, variant: str, profile: bool = True) -> VariantResult:
        """Trains and tests `variant` (run folder out_dir/<variant>), then profiles its network
        (`profile=False` skips that: params 0, GMACs and latency NaN)."""
        # Lightning and the data stack load only when training
        from derain.training.tasks import train
        from derain.training.wandb import finish_run

        cfg = self.compose(variant)
        start = time.perf_counter()
        try:
            result = train(cfg)
        finally:
            finish_run()  # the next variant starts its own W&B run
        seconds = time.perf_counter() - start
        checkpoint = Path(result["output_dir"]) / "checkpoints" / "last.ckpt"
        steps = torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"]
        params, gmacs, latency = 0, math.nan, math.nan
        if profile:
            network = instantiate(cfg.model)
            prof = profile_model(
                variant, network, size=self.scale.profile_size, runs=self.scale.latency_runs
            )
            params, gmacs, latency = prof.params, prof.gmacs, prof.latency_ms_median
        return VariantResult(
            variant=variant,
            description=variant_description(variant),
            switches=self.switches(variant),
            params=params,
            gmacs=gmacs,
            latency_ms=latency,
            test=result["test"],
            steps=int(steps),
            train_seconds=seconds,
            run_dir=str(result["output_dir"]),
            checkpoint=str(checkpoint),
        )


def _yaml_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
