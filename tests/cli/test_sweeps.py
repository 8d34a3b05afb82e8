"""Sweeps with -m: a grid over ablations (separate W&B runs) and an Optuna search."""

from __future__ import annotations

import json

import yaml

from helpers import TINY, run_cli


def test_two_value_sweep_gives_two_runs_and_two_wandb_runs(tmp_path):
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    run_cli(
        "derain-train",
        "-m",
        *TINY,
        "model/ablation=full,no_mam",
        "logger=wandb",
        "logger.wandb.offline=true",
        cwd=tmp_path,
        env=env,
    )
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name for j in jobs] == ["0", "1"]
    cross = [
        yaml.safe_load((j / ".hydra" / "config.yaml").read_text())["model"]["cross_attention"]
        for j in jobs
    ]
    assert cross == [True, False]
    run_ids = {next(j.glob("wandb/offline-run-*")).name.rsplit("-", 1)[1] for j in jobs}
    assert len(run_ids) == 2
    for job in jobs:
        assert json.loads((job / "results.json").read_text())["sets"]["mean"]["images"] == 2 + 2


def test_optuna_search_runs_its_trials_and_reports_the_best(tmp_path):
    proc = run_cli(
        "derain-train",
        "-m",
        *TINY,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=2",
        "test=false",
        cwd=tmp_path,
    )
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"optimizer.lr", "loss.edge_weight"}  # width fixed by TINY
    assert 0 < best["best_value"] < 100  # a PSNR in dB
    assert "Best value" in proc.stdout + proc.stderr


def test_optuna_search_refuses_trials_on_several_processes(tmp_path):
    # the demo trains on two DDP processes; a sampler's trials cannot be relaunched that way
    proc = run_cli(
        "derain-train",
        "-m",
        "experiment=demo",
        *TINY,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=1",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    assert "trainer.devices=2" in message and "trainer=cpu data.batch_size=8" in message
    assert "Initializing distributed" not in message  # refused before any process started
