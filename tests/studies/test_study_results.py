"""derain.studies.results on run folders the tests write: mean ± std over seeds, paired
differences with a bootstrap interval and a verdict, learning curves."""

from __future__ import annotations

import csv
import json
import math
import statistics

import numpy as np
import pytest
from scipy import stats

from derain.studies.results import (
    Cost,
    compare,
    curve_gaps,
    paired_bootstrap,
    plot_curve_gaps,
    plot_deltas,
    plot_learning_curves,
    plot_quality_vs_cost,
    read_runs,
    study_table,
    training_cpu_hours,
)

MODELS = {
    "full": {"_target_": "derain.models.ELF", "width": 8, "cross_attention": True},
    "no_mam": {"_target_": "derain.models.ELF", "width": 8, "cross_attention": False},
}


def write_point(study, variant, seed, scores, curve=((1, 1.0, 2.0, 20.0),), cpu_s=None):
    """A finished point: scores {set: {image: psnr}} (ssim = psnr / 100)."""
    folder = study / variant / f"seed{seed}"
    folder.mkdir(parents=True)
    per_image = [
        {"set": s, "name": n, "input_psnr": 10.0, "psnr": v, "ssim": v / 100}
        for s, images in scores.items()
        for n, v in images.items()
    ]
    sets = {
        s: {"psnr": statistics.fmean(images.values()),
            "ssim": statistics.fmean(v / 100 for v in images.values()), "images": len(images)}
        for s, images in scores.items()
    }  # fmt: skip
    sets["mean"] = {k: statistics.fmean(v[k] for v in sets.values()) for k in ("psnr", "ssim")}
    (folder / "results.json").write_text(
        json.dumps({"metadata": {"model": MODELS[variant]}, "sets": sets, "per_image": per_image})
    )
    with (folder / "per_image.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["set", "name", "input_psnr", "psnr", "ssim"])
        writer.writeheader()
        writer.writerows(per_image)
    with (folder / "curve.csv").open("w", newline="") as f:
        f.write("step,wall_s,cpu_s,val/psnr\n")
        f.writelines(",".join(map(str, row)) + "\n" for row in curve)
    if cpu_s is not None:
        (folder / "training_time.json").write_text(json.dumps({"steps": 6, "cpu_s": cpu_s}))
    (folder / "finished.json").write_text("{}")
    return folder


def scores(values, shift=0.0):
    """Two test sets of len(values) images each."""
    return {
        "light": {f"l{i}": v + shift for i, v in enumerate(values)},
        "heavy": {f"h{i}": v - 10 + shift for i, v in enumerate(values)},
    }


# widely spread image scores: a small shift hides among them unless the images are paired
SPREAD = [20.0, 35.0, 24.0, 31.0, 27.0, 38.0, 22.0, 29.0]


def test_mean_and_std_over_seeds_are_those_of_the_folders(tmp_path):
    for seed, shift in ((1, 0.0), (2, 1.0), (3, 2.5)):
        write_point(tmp_path, "full", seed, scores(SPREAD, shift))
    runs = read_runs(tmp_path)
    row = study_table(runs).row("full")
    means = [json.loads((tmp_path / "full" / f"seed{s}" / "results.json").read_text())["sets"]
             ["mean"]["psnr"] for s in (1, 2, 3)]  # fmt: skip
    assert row.psnr.mean == pytest.approx(statistics.fmean(means))
    assert row.psnr.std == pytest.approx(statistics.stdev(means))
    assert row.seeds == [1, 2, 3] and row.delta_psnr is None  # the reference itself
    assert str(row.psnr) == f"{statistics.fmean(means):.2f} ± {statistics.stdev(means):.2f}"


def test_a_small_consistent_gain_is_resolved_by_pairing_where_pooled_means_cannot(tmp_path):
    rng = np.random.default_rng(0)
    for seed in (1, 2, 3):
        write_point(tmp_path, "full", seed, scores(SPREAD, shift=seed))
        gain = 0.2 + 0.05 * rng.standard_normal(len(SPREAD))
        write_point(tmp_path, "no_mam", seed, scores(np.add(SPREAD, gain).tolist(), shift=seed))
    runs = read_runs(tmp_path)
    interval = compare(runs, "no_mam")
    assert interval.verdict == "better" and 0 < interval.low < interval.delta < interval.high
    # pooled over images and seeds, the same scores do not tell the two networks apart
    pooled = {v: [x for r in runs if r.variant == v for x in r.scores()["light"].values()]
              for v in ("full", "no_mam")}  # fmt: skip
    assert stats.ttest_ind(pooled["no_mam"], pooled["full"], equal_var=False).pvalue > 0.5


def test_a_gain_in_the_means_that_pairs_do_not_share_is_not_resolved(tmp_path):
    # equal means per set for both, but the variant is far better on some images and far worse
    # on others: a pooled comparison of per-set means would call +1 dB a gain
    for seed in (1, 2):
        write_point(tmp_path, "full", seed, scores(SPREAD))
        write_point(tmp_path, "no_mam", seed, scores(SPREAD[::-1], shift=1.0))
    interval = compare(read_runs(tmp_path), "no_mam")
    assert interval.delta == pytest.approx(1.0)
    assert interval.verdict == "not resolved" and interval.low < 0 < interval.high


def test_a_consistent_loss_is_worse(tmp_path):
    write_point(tmp_path, "full", 1, scores(SPREAD))
    write_point(tmp_path, "no_mam", 1, scores(SPREAD, shift=-0.3))
    interval = compare(read_runs(tmp_path), "no_mam")
    assert interval.verdict == "worse" and interval.delta == pytest.approx(-0.3)
    assert interval.high == pytest.approx(-0.3)  # every difference the same: no spread


def test_the_interval_depends_on_the_paired_differences_alone(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    gain = [0.5, -0.2, 0.9, 0.1, 0.3, -0.4, 0.7, 0.2]
    for study, base in ((a, SPREAD), (b, [25.0] * len(SPREAD))):
        write_point(study, "full", 1, scores(base))
        write_point(study, "no_mam", 1, scores(np.add(base, gain).tolist()))
    ia, ib = compare(read_runs(a), "no_mam"), compare(read_runs(b), "no_mam")
    assert (ia.low, ia.high) == pytest.approx((ib.low, ib.high), abs=1e-9)


def test_the_seeded_bootstrap_is_deterministic():
    d = {"light": np.random.default_rng(1).normal(0.1, 1.0, size=(3, 20))}
    assert paired_bootstrap(d, seed=5) == paired_bootstrap(d, seed=5)
    assert paired_bootstrap(d, seed=5)[1:] != paired_bootstrap(d, seed=6)[1:]
    # the estimate is the mean difference; the 95% interval holds it
    mean, low, high = paired_bootstrap(d, seed=5)
    assert mean == pytest.approx(d["light"].mean()) and low < mean < high


def test_pairs_need_common_seeds_and_the_same_images(tmp_path):
    write_point(tmp_path, "full", 1, scores(SPREAD))
    write_point(tmp_path, "no_mam", 2, scores(SPREAD))
    with pytest.raises(ValueError, match="share no seed"):
        compare(read_runs(tmp_path), "no_mam")
    other = scores(SPREAD)
    other["light"]["extra"] = 30.0
    write_point(tmp_path, "no_mam", 1, other)
    with pytest.raises(ValueError, match="different test images"):
        compare(read_runs(tmp_path), "no_mam")


def test_an_empty_study_folder_says_how_to_fill_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="experiment=ablation"):
        read_runs(tmp_path)


def test_table_curves_and_plots_cover_every_variant_and_seed(tmp_path):
    for seed in (1, 2):
        curve = [(s, s * 1.5, s * 2.0, 20 + s) for s in (2, 4, 6)]
        write_point(tmp_path, "full", seed, scores(SPREAD), curve, cpu_s=60.0 * seed)
        write_point(tmp_path, "no_mam", seed, scores(SPREAD, shift=0.5), curve, cpu_s=30.0)
    runs = read_runs(tmp_path)
    costs = {"full": Cost(1000, 2.0, 5.0, 64), "no_mam": Cost(900, 1.5, 4.0, 64)}
    table = study_table(runs, costs=costs, resamples=500)
    markdown = table.to_markdown()
    assert "| no_mam | cross_attention=false | 2 |" in markdown
    assert "| better | 0.5 | 0.9k | 1.500 | 4.0 |" in markdown and "GMACs @64²" in markdown
    assert table.row("full").train_cpu_s == 90.0  # mean over the seeds' training CPU seconds
    assert training_cpu_hours(runs) == pytest.approx((60 + 120 + 30 + 30) / 3600)
    assert table.row("no_mam").steps == 6
    paths = table.write(tmp_path / "out")
    with paths["csv"].open() as f:
        records = {r["variant"]: r for r in csv.DictReader(f)}
    assert float(records["no_mam"]["delta_psnr"]) == pytest.approx(0.5)
    assert records["no_mam"]["verdict_psnr"] == "better" and records["full"]["verdict_psnr"] == ""
    curves = plot_learning_curves(runs)
    assert [len(ax.lines) for ax in curves.axes] == [4, 4]  # 2 variants × 2 seeds per panel
    assert list(curves.axes[1].lines[0].get_xdata()) == [4.0, 8.0, 12.0]  # CPU seconds
    assert len(plot_deltas(table).axes[0].containers) == 1
    assert math.isfinite(table.row("full").psnr.std)
    quality = plot_quality_vs_cost(table).axes[0]
    assert [t.get_text() for t in quality.texts] == ["full", "no_mam"]
    assert quality.containers[1].lines[0].get_xdata()[0] == 1.5  # no_mam at its GMACs


def test_the_gap_along_training_pairs_seed_and_step(tmp_path):
    write_point(tmp_path, "full", 1, scores(SPREAD), [(2, 1, 1, 20.0), (4, 2, 2, 22.0)])
    write_point(tmp_path, "full", 2, scores(SPREAD), [(2, 1, 1, 21.0), (4, 2, 2, 25.0)])
    # no_mam: ahead early, behind late; seed 2 skipped the validation at step 2
    write_point(tmp_path, "no_mam", 1, scores(SPREAD), [(2, 1, 1, 21.0), (4, 2, 2, 21.0)])
    write_point(tmp_path, "no_mam", 2, scores(SPREAD), [(4, 2, 2, 23.0), (6, 3, 3, 30.0)])
    gaps = curve_gaps(read_runs(tmp_path))
    # step 2: seed 1 alone (+1); step 4: the mean of -1 and -2; step 6: full never validated
    assert gaps == {"no_mam": [(2, 1.0, 1), (4, -1.5, 2)]}
    line = plot_curve_gaps(read_runs(tmp_path)).axes[0].lines[0]
    assert list(line.get_ydata()) == [1.0, -1.5]
