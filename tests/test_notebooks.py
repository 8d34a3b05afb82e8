"""notebooks/: stored without outputs, parameterised, and executed end to end at smoke scale."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import nbformat
import pytest
import torch
from hydra.utils import instantiate

from derain.studies.profiling import count_macs, count_parameters

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def _execute(notebook: Path, out_dir: Path, **parameters) -> nbformat.NotebookNode:
    """Runs `notebook` with papermill in this environment's python3 kernel (jupyter_client starts
    a kernelspec whose command is `python` with this interpreter); returns the executed copy."""
    import papermill

    executed = out_dir / f"executed_{notebook.name}"
    papermill.execute_notebook(
        str(notebook),
        str(executed),
        parameters={"scale": "smoke", "out_dir": str(out_dir), "threads": 1, **parameters},
        kernel_name="python3",
        cwd=str(notebook.parent),
        progress_bar=False,
    )
    return nbformat.read(executed, as_version=4)


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"01_ablation.ipynb", "02_inspect.ipynb"}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(notebook):
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{notebook.name}: clear the outputs before committing"
            assert cell.execution_count is None, f"{notebook.name}: clear the execution counts"
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_a_papermill_parameters_cell_reading_the_scale(notebook):
    nb = nbformat.read(notebook, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert 'os.environ.get("DERAIN_SCALE", "smoke")' in tagged[0].source


def test_ablation_notebook_sweeps_and_its_numbers_are_the_run_folders(tmp_path):
    nb = _execute(NOTEBOOK_DIR / "01_ablation.ipynb", tmp_path)
    study = tmp_path / "logs" / "ablation" / "smoke"
    points = sorted(p.relative_to(study).as_posix() for p in study.glob("*/seed*"))
    assert points == ["full/seed1", "full/seed2", "no_mam/seed1", "no_mam/seed2"]
    with (tmp_path / "study.csv").open() as f:
        rows = {r["variant"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["full", "no_mam"]

    def results(variant, seed):
        return json.loads((study / variant / f"seed{seed}" / "results.json").read_text())

    def per_image(variant, seed):
        with (study / variant / f"seed{seed}" / "per_image.csv").open() as f:
            return {(r["set"], r["name"]): float(r["psnr"]) for r in csv.DictReader(f)}

    for variant, row in rows.items():
        means = [results(variant, s)["sets"]["mean"]["psnr"] for s in (1, 2)]
        assert float(row["psnr_mean"]) == pytest.approx(statistics.fmean(means), abs=1e-12)
        assert float(row["psnr_std"]) == pytest.approx(statistics.stdev(means), abs=1e-12)
        assert row["steps"] == "3"
        # cost: the network of the run folders' config, at the smoke scale's 64²
        network = instantiate(results(variant, 1)["metadata"]["model"])
        assert int(row["params"]) == count_parameters(network)
        macs = count_macs(network.eval(), torch.rand(1, 3, 64, 64))
        assert float(row["gmacs"]) == pytest.approx(macs / 1e9)
    # Δ: the mean over seeds and sets of the per-image differences, from the folders' CSVs
    per_set = []
    for name in ("synthetic_light", "synthetic_heavy"):
        diffs = [
            mine - per_image("full", s)[key]
            for s in (1, 2)
            for key, mine in per_image("no_mam", s).items()
            if key[0] == name
        ]
        per_set.append(statistics.fmean(diffs))
    row = rows["no_mam"]
    assert float(row["delta_psnr"]) == pytest.approx(statistics.fmean(per_set), abs=1e-9)
    assert float(row["delta_psnr_low"]) <= float(row["delta_psnr"]) <= float(row["delta_psnr_high"])
    low, high = float(row["delta_psnr_low"]), float(row["delta_psnr_high"])
    assert row["verdict_psnr"] == ("better" if low > 0 else "worse" if high < 0 else "not resolved")
    markdown = "".join(
        o.get("data", {}).get("text/markdown", "") for c in nb.cells if c.cell_type == "code"
        for o in c.outputs
    )  # fmt: skip
    assert "| no_mam | cross_attention=false | 2 |" in markdown
    for figure in ("learning_curves.png", "curve_gaps.png", "deltas.png", "quality_vs_cost.png"):
        assert (tmp_path / figure).stat().st_size > 10_000


def test_inspect_notebook_draws_layers_and_attention_of_a_tiny_network(tmp_path):
    import re

    from derain.inference import load_model
    from derain.studies.ablation import AblationStudy
    from derain.studies.inspection import attention_maps, example_batches, restoration_layers

    nb = _execute(NOTEBOOK_DIR / "02_inspect.ipynb", tmp_path)
    ckpt = tmp_path / "full" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()  # trained when none given
    figures = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert figures == [
        "attention_0_synthetic_light.png", "attention_1_synthetic_heavy.png",
        "layers_0_synthetic_light.png", "layers_1_synthetic_heavy.png",
    ]  # fmt: skip
    printed = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    # the figures' numbers are the checkpoint's, recomputed here on the same test images
    model = load_model(ckpt)
    study = AblationStudy(out_dir=tmp_path, variants=["full"], scale="smoke")
    for batch in example_batches(study.compose("full").data, per_set=1):
        layers = restoration_layers(model, batch)
        assert f"{batch['set']}: {layers.input_psnr:.2f} dB → {layers.psnr:.2f} dB" in printed
        assert layers.psnr != layers.input_psnr
        received = attention_maps(model, batch).received()[0]
        top = torch.argsort(received, descending=True)[:4].tolist()
        line = re.search(rf"{batch['set']}: \d+ heads.*most attended image channels (.*)", printed)
        assert line is not None and line.group(1).strip() == str(top)
