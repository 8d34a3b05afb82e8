"""Measurement helpers behind derain-profile."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from derain.studies.profiling import count_macs, count_parameters, dense_conv_throughput


def test_macs_and_parameters_of_a_single_convolution():
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
    assert count_parameters(conv) == 8 * 16 * 9
    assert count_macs(conv, torch.rand(1, 8, 10, 12)) == 8 * 16 * 9 * 10 * 12


@pytest.mark.parametrize("seconds", [(0.5, 0.25), (0.2, 0.4)])
def test_dense_conv_throughput_is_the_faster_layouts_macs_over_its_best_time(monkeypatch, seconds):
    from derain.studies import profiling

    timed = iter(seconds)
    calls = []

    def fake_time_call(fn, runs, warmup, device):
        calls.append(runs)
        best = next(timed)
        return [best * 2, best, best * 3][:runs] if runs >= 2 else [best]

    monkeypatch.setattr(profiling, "time_call", fake_time_call)
    rate = dense_conv_throughput(runs=3)
    assert calls == [3, 3]  # contiguous, then channels-last, each best of `runs`
    faster = min(seconds)
    assert rate.layout == ("contiguous" if seconds[0] == faster else "channels_last")
    assert rate.gmacs_per_s == pytest.approx(48 * 48 * 9 * 256 * 256 / faster / 1e9)


def test_dense_conv_throughput_times_a_real_convolution():
    rate = dense_conv_throughput(runs=1)
    assert rate.layout in {"contiguous", "channels_last"}
    # a 3×3 convolution runs at 1–1000 GMAC/s on any CPU this runs on
    assert 1 < rate.gmacs_per_s < 1000
