"""ELF is the authors' network: their weights, ported, reproduce their outputs.

The fixture (tests/models/fixtures/authors_elf/) was made by running the authors' published code
with random weights; every LayerNorm, PReLU and temperature was moved off its initial value, so a
port that forgets or misplaces one of them fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from derain.inference import load_model
from derain.models import ELF, PRESETS, AuthorsCheckpointError, from_authors
from derain.models.authors import authors_key
from derain.models.reference import ReferenceELF
from derain.studies.profiling import count_parameters
from helpers import TINY, run_cli, run_dirs

FIXTURE = Path(__file__).parent / "fixtures" / "authors_elf"
CASES = json.loads((FIXTURE / "authors_elf.json").read_text())["cases"]
TAGS = [case["tag"] for case in CASES]
ATOL = 1e-5


@pytest.fixture(scope="module")
def tensors() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE / "authors_elf.safetensors")


def _state_dict(tensors, tag: str) -> dict[str, torch.Tensor]:
    prefix = f"{tag}/state_dict/"
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _case(tag: str) -> dict:
    return next(case for case in CASES if case["tag"] == tag)


def _training_script_file(tensors, tag: str, path: Path) -> Path:
    """What the authors' training script saves: an epoch, the DataParallel state dict, the
    optimizer state."""
    state = {f"module.{k}": v for k, v in _state_dict(tensors, tag).items()}
    torch.save(
        {"epoch": 12, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}, path
    )
    return path


def _assert_reproduces(model, tensors, tag: str) -> None:
    for height, width in _case(tag)["sizes"]:
        size = f"{height}x{width}"
        with torch.no_grad():
            out = model(tensors[f"{tag}/input_{size}"])
        torch.testing.assert_close(out.image, tensors[f"{tag}/image_{size}"], atol=ATOL, rtol=0)
        torch.testing.assert_close(
            out.background_half, tensors[f"{tag}/background_half_{size}"], atol=ATOL, rtol=0
        )


@pytest.mark.parametrize("tag", TAGS)
def test_ported_state_dict_reproduces_the_authors_outputs(tensors, tag):
    model = from_authors(_state_dict(tensors, tag))
    assert not model.training
    case = _case(tag)
    assert model.recovery_net.embed_image.out_channels == case["width"]
    assert len(model.recovery_net.stage.transformer.body) == case["depth"] + 1
    assert count_parameters(model) == case["params"]
    _assert_reproduces(model, tensors, tag)


@pytest.mark.parametrize("tag", TAGS)
def test_training_script_checkpoint_file_reproduces_the_authors_outputs(tensors, tag, tmp_path):
    path = _training_script_file(tensors, tag, tmp_path / "model_best.pth")
    _assert_reproduces(from_authors(path), tensors, tag)
    # the same dict, already in memory
    _assert_reproduces(from_authors(torch.load(path, weights_only=True)), tensors, tag)


@pytest.mark.parametrize("tag", TAGS)
def test_fast_paths_compute_the_authors_function(tensors, tag):
    # channels-first maps (the other memory layout) and the straightforward reference network
    ported = from_authors(_state_dict(tensors, tag))
    contiguous = ELF(**{**_arguments(ported), "channels_last": False}).eval()
    contiguous.load_state_dict(ported.state_dict())
    _assert_reproduces(contiguous, tensors, tag)
    reference = ReferenceELF(**_arguments(ported)).eval()
    reference.load_state_dict(ported.state_dict())
    _assert_reproduces(reference, tensors, tag)


def _arguments(model: ELF) -> dict:
    from derain.inference import elf_arguments

    return elf_arguments(model)


@pytest.mark.parametrize(
    ("listing", "preset", "params"),
    [("published_w48", "elf_small", 1_223_972), ("paper_w48_d10", "elf", 1_536_782)],
)
def test_full_size_key_listings_convert_to_the_presets(listing, preset, params):
    shapes = json.loads((FIXTURE / "authors_keys.json").read_text())["configs"][listing]
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.randn(*shape, generator=generator) for k, shape in shapes.items()}
    model = from_authors(state)
    assert count_parameters(model) == params == PRESETS[preset].reference_params
    built = ELF.from_preset(preset)
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in built.state_dict().items()
    }
    # each tensor lands where the name table says
    depth = PRESETS[preset].arguments["depth"]
    ours = model.state_dict()
    key = "recovery_net.stage.conv.dec2.gather.mix_mid.1.weight"
    assert torch.equal(ours[key], state[authors_key(key, depth)])


def test_subnets_share_one_prelu_across_their_cabs(tensors):
    model = from_authors(_state_dict(tensors, "w16_d2"))
    for subnet, cabs in ((model.rain_net, 8), (model.recovery_net, 6)):
        names = [
            n
            for n, m in subnet.named_modules(remove_duplicate=False)
            if n.endswith("body.1") and isinstance(m, torch.nn.PReLU)
        ]
        acts = {id(subnet.get_submodule(n)) for n in names}
        assert len(names) == cabs and len(acts) == 1


def _broken(tensors, change: str) -> dict[str, torch.Tensor]:
    state = _state_dict(tensors, "w16_d2")
    if change == "missing":
        del state["ssnet.ssnnet_decoder.up_31.up.1.weight"]
    elif change == "extra":
        state["ssnet.spare.weight"] = torch.zeros(3)
    elif change == "shape":
        state["dsnet.tail.weight"] = torch.zeros(3, 16, 5, 5)
    return state


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing", r"missing tensors 'ssnet\.ssnnet_decoder\.up_31\.up\.1\.weight'"),
        ("extra", r"unknown tensors 'ssnet\.spare\.weight'"),
        ("shape", r"'dsnet\.tail\.weight' has shape \(3, 16, 5, 5\), expected \(3, 16, 3, 3\)"),
    ],
)
def test_a_wrong_tensor_is_refused_by_its_name(tensors, change, message):
    with pytest.raises(AuthorsCheckpointError, match=message):
        from_authors(_broken(tensors, change))


def test_files_that_are_not_checkpoints_are_refused(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(AuthorsCheckpointError, match="notes.pth is not a PyTorch checkpoint"):
        from_authors(text)
    pickled = tmp_path / "object.pth"
    torch.save({"state_dict": {"a": Path("x")}}, pickled)  # loading it would run code
    with pytest.raises(AuthorsCheckpointError, match="object.pth"):
        from_authors(pickled)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        from_authors(tmp_path / "absent.pth")
    with pytest.raises(AuthorsCheckpointError, match="not tensors"):
        from_authors({"dsnet.tail.weight": [1, 2]})


def test_convert_writes_a_checkpoint_that_predict_and_eval_use(tensors, tmp_path):
    authors = _training_script_file(tensors, "w16_d2", tmp_path / "model_best.pth")
    out = tmp_path / "converted.ckpt"
    proc = run_cli("derain-convert", f"authors={authors}", f"output={out}", cwd=tmp_path)
    assert "133,800 parameters" in proc.stdout
    _assert_reproduces(load_model(out), tensors, "w16_d2")
    safetensors = tmp_path / "converted.safetensors"
    run_cli("derain-convert", f"authors={authors}", f"output={safetensors}", cwd=tmp_path)
    _assert_reproduces(load_model(safetensors), tensors, "w16_d2")

    photos = tmp_path / "photos"
    photos.mkdir()
    image = (tensors["w16_d2/input_128x96"][0].permute(1, 2, 0) * 255).round().byte().numpy()
    from PIL import Image

    Image.fromarray(image).save(photos / "rainy.png")
    run_cli("derain-predict", f"ckpt_path={out}", f"input={photos}", f"output={tmp_path / 'out'}")
    assert Image.open(tmp_path / "out" / "rainy.png").size == (96, 128)

    data = [a for a in TINY if a.startswith(("+data.test", "data.limit"))]
    run_cli("derain-eval", f"ckpt_path={out}", *data, cwd=tmp_path)
    (run,) = run_dirs(tmp_path, "eval")
    results = json.loads((run / "results.json").read_text())
    assert {"synthetic_light", "synthetic_heavy"} <= set(results["sets"])
    assert all(
        results["sets"][name]["images"] > 0 for name in ("synthetic_light", "synthetic_heavy")
    )


def test_convert_refuses_a_bad_source_and_keeps_an_existing_output(tensors, tmp_path):
    authors = tmp_path / "broken.pth"
    torch.save(_broken(tensors, "missing"), authors)
    out = tmp_path / "model.ckpt"
    out.write_bytes(b"an earlier conversion")
    proc = run_cli(
        "derain-convert", f"authors={authors}", f"output={out}", "overwrite=true", check=False
    )
    assert proc.returncode == 1
    assert "up_31" in proc.stderr and "Traceback" not in proc.stderr
    assert out.read_bytes() == b"an earlier conversion"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pth", "model.ckpt"]
    good = _training_script_file(tensors, "w16_d2", tmp_path / "good.pth")
    proc = run_cli("derain-convert", f"authors={good}", f"output={out}", check=False)
    assert proc.returncode == 1 and "overwrite=true" in proc.stderr
    assert out.read_bytes() == b"an earlier conversion"
