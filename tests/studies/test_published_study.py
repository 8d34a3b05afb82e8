"""The ablation table in docs/experiments.md is what its committed run folders give."""

from __future__ import annotations

from pathlib import Path

from derain.studies.results import read_runs, study_table

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "docs" / "studies" / "ablation_families"


def _rows(markdown: str, first: str) -> dict[str, list[str]]:
    """The rows of the markdown table whose header starts with `first`, by variant."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first} |"))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("*")] = cells
    return rows


def test_the_docs_table_equals_the_run_folders():
    runs = read_runs(STUDY)
    assert sorted({(r.variant, r.seed) for r in runs}) == [
        (v, s)
        for v in ("full", "no_attention", "no_conv_branch", "no_mam", "no_rain_prior")
        for s in (1, 2, 3)
    ]
    computed = _rows(study_table(runs).to_markdown(), "variant")
    published = _rows((ROOT / "docs" / "experiments.md").read_text(encoding="utf-8"), "variant")
    assert set(published) == set(computed)
    for variant, cells in computed.items():
        # quality, Δ with its interval, verdict and training time; the cost columns beyond
        # were measured on a machine, not read from the folders
        assert published[variant][: len(cells)] == cells, variant
