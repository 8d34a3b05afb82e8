"""notebooks/: stored without outputs, parameterised, and executed end to end at smoke scale."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nbformat
import pytest

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


def test_ablation_notebook_trains_every_variant_for_the_same_steps(tmp_path):
    _execute(NOTEBOOK_DIR / "01_ablation.ipynb", tmp_path)
    with (tmp_path / "ablation.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == [
        "full", "background_head", "no_attention", "no_conv_branch", "no_mam", "no_rain_prior",
        "rain_head",
    ]  # fmt: skip
    assert {r["steps"] for r in rows} == {"4"}  # the smoke budget, identical for all
    assert float(rows[0]["delta_psnr"]) == 0.0
    for row in rows:
        assert float(row["gmacs"]) > 0 and float(row["latency_ms"]) > 0
        assert float(row["psnr_synthetic_light"]) > 0 and float(row["psnr_synthetic_heavy"]) > 0
    assert "| no_mam | cross_attention=false |" in (tmp_path / "ablation.md").read_text()
    assert json.loads((tmp_path / "ablation.json").read_text())["scale"] == "smoke"
    for plot in ("psnr_bars.png", "psnr_vs_gmacs.png"):
        assert (tmp_path / plot).stat().st_size > 0


def test_inspect_notebook_draws_layers_and_attention_of_a_tiny_network(tmp_path):
    nb = _execute(NOTEBOOK_DIR / "02_inspect.ipynb", tmp_path)
    assert (tmp_path / "full" / "checkpoints" / "last.ckpt").is_file()  # trained when none given
    figures = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert figures == [
        "attention_0_synthetic_light.png", "attention_1_synthetic_heavy.png",
        "layers_0_synthetic_light.png", "layers_1_synthetic_heavy.png",
    ]  # fmt: skip
    printed = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "most attended image channels" in printed
