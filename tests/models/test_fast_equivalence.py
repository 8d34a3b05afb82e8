"""The optimised network computes what the straightforward one (tests/models/reference.py) does.

Same parameter names and shapes (checkpoints load into either), the same outputs to float
rounding (1e-5) on odd sizes and batches, both heads and the ablations, the same gradients, and
neither memory layout nor compilation changes the result.
"""

from __future__ import annotations

import pytest
import torch

from derain.models import ELF, PRESETS, optimize
from derain.models.blocks import LayerNorm2d, PointwiseConv, transposed_attention
from derain.models.reference import LayerNorm2d as ReferenceLayerNorm
from derain.models.reference import ReferenceELF
from derain.models.reference import transposed_attention as reference_attention

ATOL = 1e-5

CASES = {
    "elf_tiny": ("elf_tiny", {}),
    "elf_tiny+rain_head": ("elf_tiny", {"head": "rain"}),
    "elf_tiny+background_head": ("elf_tiny", {"head": "background"}),
    "elf_tiny+no_mam": ("elf_tiny", {"cross_attention": False}),
    "elf_tiny+no_attention": ("elf_tiny", {"attention": False}),
    "elf_tiny+no_conv_branch": ("elf_tiny", {"conv_branch": False}),
    "elf_tiny+no_rain_prior": ("elf_tiny", {"rain_prior": False}),
    "elf": ("elf", {}),
}


def _pair(name: str, seed: int = 0, **switches) -> tuple[ReferenceELF, ELF]:
    """A reference network with random (not default) weights, and ELF loaded from its state dict."""
    preset, overrides = CASES[name]
    arguments = {**PRESETS[preset].arguments, **overrides}
    torch.manual_seed(seed)
    reference = ReferenceELF(**arguments)
    with torch.no_grad():
        # LayerNorm weights 1, biases 0 and temperatures 1 would hide mistakes in their use
        for parameter in reference.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    fast = ELF(**arguments, **switches)
    fast.load_state_dict(reference.state_dict())
    return reference, fast


def _assert_outputs_close(expected, actual, atol: float = ATOL) -> None:
    for field in expected._fields:
        want, got = getattr(expected, field), getattr(actual, field)
        assert (want is None) == (got is None), field
        if want is not None:
            torch.testing.assert_close(got, want, atol=atol, rtol=0, msg=field)


@pytest.mark.parametrize("name", sorted(CASES))
def test_parameter_names_and_shapes_are_those_of_the_reference(name):
    reference, fast = _pair(name)
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(fast) == shapes(reference)


@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_match_the_reference(name):
    reference, fast = _pair(name)
    x = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        expected = reference.eval()(x)
        actual = fast.eval()(x)
    _assert_outputs_close(expected, actual)


def test_a_state_dict_of_the_fast_network_loads_into_the_reference():
    _, fast = _pair("elf_tiny")
    torch.manual_seed(1)
    other = ReferenceELF(**PRESETS["elf_tiny"].arguments)
    other.load_state_dict(fast.state_dict())
    x = torch.rand(1, 3, 40, 24)
    with torch.no_grad():
        _assert_outputs_close(other.eval()(x), fast.eval()(x))


@pytest.mark.parametrize("channels_last", [True, False])
def test_memory_layout_changes_nothing_but_speed(channels_last):
    reference, fast = _pair("elf_tiny", channels_last=channels_last)
    x = torch.rand(2, 3, 33, 48)
    with torch.no_grad():
        expected = reference.eval()(x)
        actual = fast.eval()(x)
        switched = optimize(fast, channels_last=not channels_last)(x)
    _assert_outputs_close(expected, actual)
    _assert_outputs_close(expected, switched)
    # the layout stays inside: callers get contiguous tensors either way
    assert all(t is None or t.is_contiguous() for t in actual)


def test_a_training_step_gives_the_same_loss_and_gradients():
    reference, fast = _pair("elf_tiny")
    x, target = torch.rand(2, 3, 32, 48), torch.rand(2, 3, 32, 48)
    losses = []
    for model in (reference, fast):
        out = model.train()(x)
        loss = (out.image - target).abs().mean() + out.background_half.square().mean()
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], atol=1e-6, rtol=0)
    expected = dict(reference.named_parameters())
    for name, parameter in fast.named_parameters():
        torch.testing.assert_close(
            parameter.grad, expected[name].grad, atol=1e-6, rtol=1e-4, msg=name
        )


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_attention_on_channels_last_maps_matches_normalise_then_multiply(heads):
    torch.manual_seed(heads)
    q, k, v = (torch.randn(2, 24, 9, 13) for _ in range(3))
    temperature = torch.rand(heads, 1, 1) + 0.5
    expected = reference_attention(q, k, v, heads, temperature)
    channels_last = [t.contiguous(memory_format=torch.channels_last) for t in (q, k, v)]
    torch.testing.assert_close(
        transposed_attention(*channels_last, heads, temperature), expected, atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        transposed_attention(q, k, v, heads, temperature), expected, atol=1e-6, rtol=0
    )


def test_layer_norm_matches_the_written_out_formula():
    torch.manual_seed(0)
    fast, reference = LayerNorm2d(16), ReferenceLayerNorm(16)
    with torch.no_grad():
        fast.weight.normal_(), fast.bias.normal_()
    reference.load_state_dict(fast.state_dict())
    x = 3 + 2 * torch.randn(2, 16, 7, 5)
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.testing.assert_close(
            fast(x.contiguous(memory_format=layout)), reference(x), atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("shape", [(2, 48, 16, 20), (1, 48, 8, 8), (3, 48, 1, 1)])
def test_pointwise_conv_is_the_same_1x1_conv_on_any_layout(shape):
    torch.manual_seed(0)
    conv = PointwiseConv(48, 254, bias=True)
    x = torch.randn(shape)
    expected = torch.nn.functional.conv2d(x, conv.weight, conv.bias)
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.testing.assert_close(
            conv(x.contiguous(memory_format=layout)), expected, atol=1e-5, rtol=0
        )


@pytest.mark.slow
def test_compiled_blocks_give_the_same_output():
    reference, fast = _pair("elf_tiny", compile=True)
    compiled = [m for m in fast.modules() if getattr(m, "_compiled_call_impl", None) is not None]
    assert compiled
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        _assert_outputs_close(reference.eval()(x), fast.eval()(x))
    assert set(fast.state_dict()) == set(reference.state_dict())
