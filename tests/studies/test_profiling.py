"""Measurement helpers behind derain-profile."""

from __future__ import annotations

import torch
from torch import nn

from derain.studies.profiling import count_macs, count_parameters, dense_conv_throughput


def test_macs_and_parameters_of_a_single_convolution():
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
    assert count_parameters(conv) == 8 * 16 * 9
    assert count_macs(conv, torch.rand(1, 8, 10, 12)) == 8 * 16 * 9 * 10 * 12


def test_dense_conv_throughput_reports_a_layout_and_a_positive_rate():
    rate = dense_conv_throughput(runs=1)
    assert rate.layout in {"contiguous", "channels_last"}
    assert rate.gmacs_per_s > 0.1
