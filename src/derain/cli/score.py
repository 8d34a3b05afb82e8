"""`derain-score`: the papers' MATLAB scoring script in Python — mean PSNR/SSIM of two folders.

    derain-score pred=results/Rain100L gt=data/Rain100L/target
    derain-score pred=... gt=... out=scores/Rain100L        # + scores.csv and scores.json
    derain-score pred=... gt=... channel=rgb rounded_y=false

Results and ground truths are paired by file name without extension (`rain-001.png` with
`rain-001.jpg`), never by sorted position; the scores follow `derain.evaluation.metrics` (docs/protocol.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from derain.folders.score import score_folders, write_reports
from derain.paths import config_dir


def run(cfg: DictConfig, console: Console | None = None) -> dict:
    """Scores `cfg.pred` against `cfg.gt`, prints the means, writes reports to `cfg.out` if set.

    Returns `derain.folders.score.score_folders`'s summary.
    """
    console = console or Console()
    for setting in ("pred", "gt"):
        if OmegaConf.is_missing(cfg, setting):
            raise ValueError(f"{setting}=DIR is required: derain-score pred=RESULTS_DIR gt=GT_DIR")
    if cfg.channel not in ("y", "rgb"):
        raise ValueError(f"channel={cfg.channel} is not supported: use channel=y or channel=rgb")
    if not isinstance(cfg.rounded_y, bool):
        raise ValueError(f"rounded_y={cfg.rounded_y} is not a boolean: use rounded_y=true or false")
    pred_dir, gt_dir = Path(cfg.pred), Path(cfg.gt)
    summary = score_folders(pred_dir, gt_dir, channel=cfg.channel, rounded_y=cfg.rounded_y)

    plane = "RGB" if cfg.channel == "rgb" else ("Y" if cfg.rounded_y else "Y (unrounded)")
    table = Table(title=escape(f"{pred_dir} vs {gt_dir}"))
    table.add_column("channel")
    table.add_column("images", justify="right")
    table.add_column("PSNR (dB)", justify="right")
    table.add_column("SSIM", justify="right")
    table.add_row(plane, str(summary["count"]), f"{summary['psnr']:.4f}", f"{summary['ssim']:.4f}")
    console.print(table)
    if cfg.out is not None:
        for path in write_reports(Path(cfg.out), summary):
            console.print(f"wrote {path}", markup=False, highlight=False)
    return summary


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="score")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except (FileNotFoundError, ValueError) as err:
        # the message names the file and the fix; a traceback would only bury it
        Console(stderr=True).print(
            f"[bold red]derain-score: error:[/] {escape(str(err))}", highlight=False, soft_wrap=True
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
