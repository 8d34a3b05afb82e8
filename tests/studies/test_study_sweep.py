"""The ablation study as a Hydra multirun (conf/experiment/ablation.yaml): one folder per
(variant, seed), finished points skipped on a restart, the same seed giving the same scores."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from derain.paths import config_dir
from derain.studies.budgets import STUDY_SMOKE_OVERRIDES
from derain.studies.results import read_runs, study_table
from helpers import run_cli

STUDY_TINY = list(STUDY_SMOKE_OVERRIDES)


def sweep(root, *args, check=True):
    return run_cli(
        "derain-train", "-m", *STUDY_TINY, *args, env={"DERAIN_ROOT": str(root)}, check=check
    )


def stamps(folder):
    """Modification times of every file of a run folder but its log and Hydra's config copy,
    which each start rewrites."""
    return {
        p.relative_to(folder): p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.is_file() and ".hydra" not in p.parts and p.suffix != ".log"
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished 2-point study (full and no_mam, seed 1) named `t`: (root, study folder)."""
    root = tmp_path_factory.mktemp("study")
    sweep(root, "model/ablation=full,no_mam", "seed=1", "study.name=t")
    return root, root / "logs" / "ablation" / "t"


def test_each_point_writes_its_results_into_a_folder_named_by_variant_and_seed(study):
    _, folder = study
    assert sorted(p.relative_to(folder).as_posix() for p in folder.glob("*/seed*")) == [
        "full/seed1", "no_mam/seed1",
    ]  # fmt: skip
    for point in folder.glob("*/seed*"):
        for name in ("results.json", "per_image.csv", "curve.csv", "finished.json"):
            assert (point / name).is_file(), f"{point} lacks {name}"
    model = json.loads((folder / "no_mam" / "seed1" / "results.json").read_text())
    assert model["metadata"]["model"]["cross_attention"] is False


def test_the_curve_holds_every_validation_with_its_step_and_training_time(study):
    _, folder = study
    point = folder / "full" / "seed1"
    with (point / "curve.csv").open() as f:
        curve = list(csv.DictReader(f))
    assert [int(r["step"]) for r in curve] == [1, 2, 3]
    for key in ("wall_s", "cpu_s"):
        times = [float(r[key]) for r in curve]
        assert times == sorted(times) and times[0] > 0
    # the same validation scores the run's CSV logger recorded at those steps
    with (point / "csv" / "metrics.csv").open() as f:
        logged = {int(r["step"]): float(r["val/psnr"]) for r in csv.DictReader(f) if r["val/psnr"]}
    assert {int(r["step"]) - 1: float(r["val/psnr"]) for r in curve} == pytest.approx(logged)
    timing = json.loads((point / "training_time.json").read_text())
    assert timing["steps"] == 3 and timing["cpu_s"] >= float(curve[-1]["cpu_s"])


def test_a_restarted_sweep_skips_finished_points_and_an_extended_one_trains_only_new_ones(study):
    root, folder = study
    before = {p: stamps(p) for p in folder.glob("*/seed*")}
    proc = sweep(root, "model/ablation=full,no_mam", "seed=1", "study.name=t")
    assert proc.stdout.count("skipped:") + proc.stderr.count("skipped:") == 2
    assert {p: stamps(p) for p in folder.glob("*/seed*")} == before  # nothing trained again
    # one more seed of `full`: only that point trains
    proc = sweep(root, "model/ablation=full", "seed=1,2", "study.name=t")
    assert (proc.stdout + proc.stderr).count("skipped:") == 1
    assert {p: stamps(p) for p in before} == before
    assert (folder / "full" / "seed2" / "finished.json").is_file()
    # another seed trains another network (the same seed gives the same one: see the stopped point's test)
    first = (folder / "full" / "seed1" / "per_image.csv").read_text()
    assert (folder / "full" / "seed2" / "per_image.csv").read_text() != first


def test_a_moved_study_folder_still_holds_finished_points(study, tmp_path):
    root, _ = study
    shutil.copytree(root / "logs", tmp_path / "logs")
    proc = sweep(tmp_path, "model/ablation=full,no_mam", "seed=1", "study.name=t")
    assert (proc.stdout + proc.stderr).count("skipped:") == 2


def test_a_point_finished_with_other_settings_is_kept_and_named(study):
    root, folder = study
    before = stamps(folder / "no_mam" / "seed1")
    proc = sweep(
        root, "model/ablation=no_mam", "seed=1", "study.name=t", "study.budget=5", check=False
    )
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    assert "other settings" in message and "trainer.max_steps" in message
    assert str(folder / "no_mam" / "seed1") in message
    assert stamps(folder / "no_mam" / "seed1") == before


def test_the_library_reads_the_numbers_the_run_folders_hold(study):
    _, folder = study
    runs = [r for r in read_runs(folder) if r.seed == 1]  # other tests may add seeds
    assert [(r.variant, r.seed) for r in runs] == [("full", 1), ("no_mam", 1)]
    table = study_table(runs, resamples=200)
    for variant in ("full", "no_mam"):
        stored = json.loads((folder / variant / "seed1" / "results.json").read_text())["sets"]
        row = table.row(variant)
        assert row.psnr.mean == stored["mean"]["psnr"]
        assert row.ssim.mean == stored["mean"]["ssim"]
        assert row.psnr_per_set["synthetic_heavy"].mean == stored["synthetic_heavy"]["psnr"]
        assert row.steps == 3
        timing = json.loads((folder / variant / "seed1" / "training_time.json").read_text())
        assert row.train_cpu_s == timing["cpu_s"]
    assert table.row("no_mam").change == "cross_attention=false"
    delta = table.row("no_mam").delta_psnr.delta
    assert delta == pytest.approx(table.row("no_mam").psnr.mean - table.row("full").psnr.mean)


def test_points_are_wandb_runs_grouped_by_study_and_tagged_with_variant_and_seed():
    with initialize_config_dir(version_base=None, config_dir=str(config_dir())):
        cfg = compose(
            "train",
            overrides=[
                "experiment=ablation",
                "model/ablation=no_mam",
                "seed=2",
                "logger=wandb",
                "study.name=widened",
            ],  # fmt: skip
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)  # as derain-train does: ${hydra:...} resolves
    wandb = OmegaConf.to_container(cfg.logger.wandb, resolve=True)
    assert wandb["group"] == "widened"
    assert wandb["name"] == "widened-no_mam-seed2"
    assert wandb["tags"] == ["ablation", "widened", "no_mam", "seed2"]
    assert cfg.hydra.sweep.subdir == "no_mam/seed2"
    assert cfg.trainer.max_steps == cfg.study.budget and cfg.trainer.max_time is None


def test_a_point_stopped_before_it_finished_trains_again_to_the_same_scores(study):
    # and so the same seed reproduces a point's scores exactly
    root, folder = study
    point = folder / "no_mam" / "seed1"
    scores = (point / "per_image.csv").read_text()
    trained = (point / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    for name in ("finished.json", "results.json", "per_image.csv"):  # as if stopped in testing
        (point / name).unlink()
    proc = sweep(root, "model/ablation=no_mam", "seed=1", "study.name=t")
    assert "skipped:" not in proc.stdout + proc.stderr
    assert (point / "checkpoints" / "last.ckpt").stat().st_mtime_ns != trained  # trained again
    assert (point / "per_image.csv").read_text() == scores
    assert (point / "finished.json").is_file()
