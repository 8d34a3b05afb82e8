"""Result tables: the unweighted mean over sets, and what the Markdown shows."""

from __future__ import annotations

import json

from derain.evaluation.tables import markdown_table, with_mean, write_results


def _results():
    return {
        "a": {"input_psnr": 20.0, "input_ssim": 0.5, "psnr": 30.0, "ssim": 0.9, "images": 100},
        "b": {"input_psnr": 10.0, "input_ssim": 0.3, "psnr": 20.0, "ssim": 0.7, "images": 1},
    }


def test_mean_over_sets_is_unweighted_by_image_count():
    mean = with_mean(_results())["mean"]
    assert mean["psnr"] == 25.0 and mean["input_psnr"] == 15.0
    assert mean["images"] == 101


def test_markdown_table_shows_each_set_the_mean_and_the_gain():
    table = markdown_table(_results(), "run")
    assert "| a | 100 | 20.00 | 0.5000 | 30.00 | 0.9000 | +10.00 |" in table
    assert "**mean over sets**" in table and "+10.00" in table


def test_write_results_writes_markdown_json_and_csv(tmp_path):
    per_image = [{"set": "a", "name": "x", "input_psnr": 20.0, "psnr": 30.0, "ssim": 0.9}]
    paths = write_results(tmp_path, _results(), per_image, {"ckpt_path": "m.ckpt"})
    assert "m.ckpt" in paths["markdown"].read_text()
    assert json.loads(paths["json"].read_text())["sets"]["mean"]["psnr"] == 25.0
    assert paths["csv"].read_text().splitlines()[1] == "a,x,20.0,30.0,0.9"


def test_an_ensembled_result_shows_the_single_pass_beside_it_and_says_so(tmp_path):
    results = {
        name: {**r, "single_psnr": r["psnr"] - 1.0, "single_ssim": r["ssim"] - 0.1}
        for name, r in _results().items()
    }
    table = markdown_table(results)
    assert "single-pass PSNR" in table
    assert (
        "| a | 100 | 20.00 | 0.5000 | 30.00 | 0.9000 | +10.00 | 29.00 | 0.8000 | +9.00 |" in table
    )
    assert with_mean(results)["mean"]["single_psnr"] == 24.0
    per_image = [
        {"set": "a", "name": "x", "input_psnr": 20.0, "psnr": 30.0, "ssim": 0.9, "single_psnr": 29}
    ]
    paths = write_results(
        tmp_path, results, per_image, {"ckpt_path": "m.ckpt", "self_ensemble": "d4"}
    )
    assert "×8 self-ensemble" in paths["markdown"].read_text()
    assert paths["csv"].read_text().splitlines()[0].endswith(",single_psnr")
    # without an ensemble the table keeps its seven columns
    assert "single-pass" not in markdown_table(_results())


def test_a_rain_free_set_stays_out_of_the_mean_over_sets():
    results = {
        "rainy": {"images": 2, "input_psnr": 20.0, "input_ssim": 0.5, "psnr": 30.0, "ssim": 0.9},
        "rain_free": {
            "images": 3,
            "input_psnr": float("inf"),
            "input_ssim": 1.0,
            "psnr": 41.0,
            "ssim": 0.99,
        },
    }
    mean = with_mean(results)["mean"]
    assert mean["input_psnr"] == 20.0 and mean["psnr"] == 30.0 and mean["images"] == 2
    assert "inf" not in markdown_table(results).split("mean over sets")[1]
