"""derain.benchmarks.bench_updates: the two EMA updates it times compute the same average."""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import EMAWeightAveraging

from derain.benchmarks import bench_updates as bench
from derain.models import ELF
from derain.training.callbacks import EMA


def test_timed_ema_updates_agree_so_the_speed_comparison_is_fair():
    torch.manual_seed(0)
    model = ELF(width=8, depth=1)
    per_tensor = bench.averaged_model(EMAWeightAveraging(decay=0.9), model)
    foreach = bench.averaged_model(EMA(decay=0.9), model)
    assert foreach.multi_avg_fn is not None and per_tensor.multi_avg_fn is None
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        per_tensor.update_parameters(model)
        foreach.update_parameters(model)
    moved = False
    for a, b, now in zip(
        per_tensor.module.parameters(), foreach.module.parameters(), model.parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        moved |= not torch.allclose(a, now)
    assert moved  # an average, not a copy of the current weights


def test_script_prints_both_speed_ups(capsys):
    assert bench.main(["--rounds", "1", "--calls", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("ms per update") == 4
    assert out.count("speed-up") == 2
