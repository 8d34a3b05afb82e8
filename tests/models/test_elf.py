"""Specification of the ELF network: exact size, any input size, determinism, gradients."""

from __future__ import annotations

import pytest
import torch

from derain.models import ELF, PRESETS, ELFOutput
from derain.models.blocks import CrossTransformerBlock, TransformerBlock
from derain.studies.profiling import count_macs, count_parameters


@pytest.mark.parametrize("name", ["elf", "elf_small"])
def test_preset_has_the_authors_parameters_and_macs(name):
    preset = PRESETS[name]
    model = ELF.from_preset(name).eval()
    assert count_parameters(model) == preset.reference_params
    gmacs = count_macs(model, torch.rand(1, 3, 256, 256)) / 1e9
    assert round(gmacs, 2) == preset.reference_gmacs_256, gmacs


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return ELF.from_preset("elf_tiny").eval()


@pytest.mark.parametrize("size", [(37, 53), (16, 16), (5, 7), (64, 33)])
def test_any_input_size_gives_outputs_of_that_size(tiny, size):
    h, w = size
    with torch.no_grad():
        out = tiny(torch.rand(1, 3, h, w))
    assert isinstance(out, ELFOutput)
    assert out.image.shape == (1, 3, h, w)
    assert out.background_half.shape == (1, 3, (h + 1) // 2, (w + 1) // 2)
    assert out.rain_half.shape == out.background_half.shape
    assert out.rain.shape == (1, 3, h, w)


def test_padding_does_not_leak_into_the_crop(tiny):
    # the content at the top-left must not depend on how far the padding region extends
    x = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        whole = tiny(x).image
        odd = tiny(x[..., :45, :45]).image
    assert odd.shape == (1, 3, 45, 45)
    assert torch.isfinite(odd).all()
    # far from the padded border the two agree closely (the receptive field is large but local
    # convolutions dominate near the top-left corner)
    assert (whole[..., :8, :8] - odd[..., :8, :8]).abs().max() < 0.05


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 1, 32, 32), (1, 4, 32, 32), (2, 3, 32, 32, 1)])
def test_bad_shapes_raise_a_clear_error(tiny, shape):
    with pytest.raises(
        ValueError, match=r"B×3×H×W.*" + str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")
    ):
        tiny(torch.rand(*shape))


def test_sample_alone_and_in_a_batch_give_the_same_output(tiny):
    batch = torch.rand(3, 3, 40, 56)
    with torch.no_grad():
        together = tiny(batch).image
        alone = torch.cat([tiny(batch[i : i + 1]).image for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("head", ["refined_rain", "background", "rain"])
def test_every_parameter_gets_a_finite_gradient(head):
    torch.manual_seed(0)
    model = ELF.from_preset("elf_tiny", head=head)
    model(torch.rand(2, 3, 32, 32)).image.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, bad
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0


def test_a_black_image_gives_finite_gradients():
    # all-zero features reach the attention's cosine norms; their gradient must not be NaN
    torch.manual_seed(0)
    model = ELF.from_preset("elf_tiny")
    black, clean = torch.zeros(2, 3, 32, 32), torch.full((2, 3, 32, 32), 0.1)
    (model(black).image - clean).square().mean().backward()
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, bad


def test_same_seed_gives_same_weights_and_output():
    x = torch.rand(1, 3, 32, 32)
    outputs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        model = ELF.from_preset("elf_tiny").eval()
        with torch.no_grad():
            outputs.append((model.state_dict(), model(x).image))
    (sd_a, out_a), (sd_b, out_b), (sd_c, out_c) = outputs
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    assert torch.equal(out_a, out_b)
    assert not torch.equal(out_a, out_c)


def _count(model, block_type):
    return sum(isinstance(m, block_type) for m in model.modules())


def test_rain_head_returns_the_input_minus_the_full_resolution_rain_layer():
    torch.manual_seed(0)
    model = ELF.from_preset("elf_tiny", head="rain").eval()
    x = torch.rand(1, 3, 37, 41)
    with torch.no_grad():
        out = model(x)
    assert out.rain.shape == x.shape
    torch.testing.assert_close(out.image, x - out.rain)
    # same structure as the background head: only the interpretation of the output changes
    assert count_parameters(model) == count_parameters(ELF.from_preset("elf_tiny"))


def _silence(model: ELF) -> ELF:
    """Zero the last convolutions of both subnets: R½ = 0 and a zero reconstruction residual."""
    with torch.no_grad():
        for conv in (model.rain_net.to_rain, model.recovery_net.reconstruct[-1]):
            conv.weight.zero_()
            if conv.bias is not None:
                conv.bias.zero_()
    return model


def test_paper_head_passes_rain_free_detail_through_where_the_background_head_blurs():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 37, 41)  # noise: all detail, lost by halving
    paper = _silence(ELF.from_preset("elf_tiny").eval())
    assert paper.head == "refined_rain"
    background = ELF.from_preset("elf_tiny", head="background").eval()
    background.load_state_dict(paper.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(paper(x).image, x)
        blurred = background(x).image
    assert (blurred - x).abs().mean() > 0.1
    assert count_parameters(paper) == count_parameters(background)


def test_paper_head_subtracts_the_refined_upsampled_rain_prior():
    torch.manual_seed(0)
    model = ELF.from_preset("elf_tiny").eval()
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        out = model(x)
        residual = model.recovery_net(x, out.rain_half, out.background_half)
    upsampled = torch.nn.functional.interpolate(
        out.rain_half, scale_factor=2, mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(out.rain, upsampled + residual)
    torch.testing.assert_close(out.image, x - out.rain)
    assert out.rain_half.abs().mean() > 1e-3 and residual.abs().mean() > 1e-3


def test_no_rain_prior_is_a_single_stage_network():
    full = ELF.from_preset("elf_tiny")
    single = ELF.from_preset("elf_tiny", rain_prior=False)
    assert single.rain_net is None
    rain_net = count_parameters(full.rain_net)
    mam = count_parameters(full.recovery_net.mam)
    assert count_parameters(single) == count_parameters(full) - rain_net - mam
    with torch.no_grad():
        out = single.eval()(torch.rand(1, 3, 24, 24))
    assert out.image.shape == (1, 3, 24, 24)
    assert out.background_half is None and out.rain_half is None


def test_no_conv_branch_removes_both_unets_and_their_fusions():
    full = ELF.from_preset("elf_tiny")
    ablated = ELF.from_preset("elf_tiny", conv_branch=False)
    # what remains: every tensor used outside the two U-Nets and their fusions (the rain
    # subnet's shared PReLU stays, used by its embedding CABs too)
    kept = {
        id(p): p.numel()
        for name, p in full.named_parameters(remove_duplicate=False)
        if ".stage.conv." not in name and ".stage.fuse." not in name
    }
    assert count_parameters(ablated) == sum(kept.values())
    with torch.no_grad():
        assert ablated.eval()(torch.rand(1, 3, 32, 32)).image.shape == (1, 3, 32, 32)


def test_no_mam_replaces_cross_attention_by_concat_and_conv():
    width = PRESETS["elf_tiny"].arguments["width"]
    full = ELF.from_preset("elf_tiny")
    ablated = ELF.from_preset("elf_tiny", cross_attention=False)
    assert _count(full, CrossTransformerBlock) == 1 and _count(ablated, CrossTransformerBlock) == 0
    cross = count_parameters(full.recovery_net.mam.cross)
    concat_conv = 2 * width * width * 9
    assert count_parameters(ablated) == count_parameters(full) - cross + concat_conv
    with torch.no_grad():
        assert ablated.eval()(torch.rand(1, 3, 32, 32)).image.shape == (1, 3, 32, 32)


def test_no_attention_swaps_transformer_branches_for_cabs_of_similar_cost():
    full = ELF.from_preset("elf_small").eval()
    ablated = ELF.from_preset("elf_small", attention=False).eval()
    branch_blocks = lambda m: sum(  # noqa: E731
        isinstance(b, TransformerBlock)
        for s in (m.rain_net.stage, m.recovery_net.stage)
        for b in s.transformer.modules()
    )
    assert branch_blocks(full) == 2 * 5 and branch_blocks(ablated) == 0
    x = torch.rand(1, 3, 64, 64)
    ratio = count_macs(ablated, x) / count_macs(full, x)
    assert 0.85 < ratio < 1.15, ratio
    with torch.no_grad():
        assert ablated(x).image.shape == x.shape


def test_unknown_preset_and_bad_head_are_rejected():
    with pytest.raises(ValueError, match="elf_small"):
        ELF.from_preset("elf_huge")
    with pytest.raises(ValueError, match="head must be one of refined_rain, background, rain"):
        ELF(head="detail")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_attention_is_finite_in_half_precision_where_raw_dot_products_overflow(dtype):
    from derain.models.blocks import transposed_attention

    # 1024² maps of magnitude ~3, as a trained network's: the raw dot products over all pixels
    # reach ~1e7, far past float16's 65504
    torch.manual_seed(0)
    q, k, v = (3 * torch.randn(1, 8, 1024, 1024) for _ in range(3))
    q = q + 2.0  # correlated channels: large dot products
    temperature = torch.tensor([[[1.5]], [[0.7]]])
    exact = transposed_attention(q, k, v, 2, temperature)
    low = transposed_attention(q.to(dtype), k.to(dtype), v.to(dtype), 2, temperature.to(dtype))
    assert low.dtype == dtype and torch.isfinite(low).all()
    tolerance = 0.02 if dtype == torch.float16 else 0.1  # bfloat16 keeps 8 bits of mantissa
    assert (low.float() - exact).abs().max() < tolerance * exact.abs().max()


def test_network_under_bfloat16_autocast_stays_close_to_float32():
    torch.manual_seed(0)
    model = ELF.from_preset("elf_tiny").eval()
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        exact = model(x).image
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x).image
    assert torch.isfinite(low).all()
    assert (low.float() - exact).abs().mean() < 0.02
