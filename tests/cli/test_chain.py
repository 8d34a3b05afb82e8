"""The whole command-line workflow on files: synth → train → eval (saving images) → score."""

from __future__ import annotations

import json

from helpers import run_cli, run_dirs

ON_DISK = [
    "model=elf_tiny",
    "model.width=8",
    "data=paired",
    "data.patch_size=32",
    "data.batch_size=2",
    "data.num_workers=0",
    "callbacks.progress_bar=null",
    "trainer.max_steps=2",
]


def test_synth_train_eval_score_agree_on_the_same_images(tmp_path):
    root = tmp_path / "data"
    run_cli(
        "derain-synth",
        f"output={root / 'train'}",
        "count=4",
        "size=48",
        "split=train",
        cwd=tmp_path,
    )
    run_cli(
        "derain-synth",
        f"output={root / 'test'}",
        "count=3",
        "size=48",
        "split=test",
        "seed=1",
        cwd=tmp_path,
    )
    run_cli("derain-train", *ON_DISK, f"data.root={root}", cwd=tmp_path)
    (train_run,) = run_dirs(tmp_path)
    trained = json.loads((train_run / "results.json").read_text())["sets"]["test"]

    ckpt = train_run / "checkpoints" / "last.ckpt"
    run_cli(
        "derain-eval",
        f"ckpt_path={ckpt}",
        "data=paired",
        f"data.root={root}",
        "save_images=true",
        cwd=tmp_path,
    )
    (eval_run,) = run_dirs(tmp_path, "eval")
    evaluated = json.loads((eval_run / "results.json").read_text())["sets"]["test"]
    assert evaluated["images"] == trained["images"] == 3
    assert abs(evaluated["psnr"] - trained["psnr"]) < 1e-6

    # the saved 8-bit images scored against the clean files give the numbers eval reported
    out = tmp_path / "scores"
    run_cli(
        "derain-score",
        f"pred={eval_run / 'images' / 'test'}",
        f"gt={root / 'test' / 'target'}",
        f"output={out}",
        cwd=tmp_path,
    )
    scores = json.loads((out / "scores.json").read_text())
    assert abs(scores["psnr"] - evaluated["psnr"]) < 1e-6
    assert abs(scores["ssim"] - evaluated["ssim"]) < 1e-6

    # a self-ensembled evaluation reports the single pass too, equal to the plain one
    run_cli(
        "derain-eval",
        f"ckpt_path={ckpt}",
        "data=paired",
        f"data.root={root}",
        "self_ensemble=flips",
        "run_name=flips",
        cwd=tmp_path,
    )
    flips_run = tmp_path / "logs" / "eval" / "runs" / "flips"
    ensembled = json.loads((flips_run / "results.json").read_text())["sets"]["test"]
    assert abs(ensembled["single_psnr"] - evaluated["psnr"]) < 1e-6
    assert ensembled["psnr"] != ensembled["single_psnr"]
    assert "×4 self-ensemble" in (flips_run / "results.md").read_text()
