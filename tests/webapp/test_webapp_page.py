"""The Gradio page as built (no server): one request at a time, a bounded queue, offline."""

from __future__ import annotations

import os

import pytest

from derain.inference import Restorer
from derain.webapp.workspace import Workspace
from inference.elf_checkpoints import tiny_elf


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    saved = dict(os.environ)
    workspace = Workspace(tmp_path_factory.mktemp("app"))
    os.environ.update(workspace.environment())  # before Gradio is imported, as derain-demo does
    from derain.webapp.page import PageSettings, build_page

    settings = PageSettings(model_name="tiny", queue_size=3)
    yield build_page(Restorer(tiny_elf(), device="cpu"), workspace, settings)
    os.environ.clear()
    os.environ.update(saved)


def test_deraining_runs_one_request_at_a_time(page):
    (derain,) = [fn for fn in page.fns.values() if fn.api_name == "derain"]
    assert derain.concurrency_limit == 1 and derain.queue


def test_the_queue_turns_requests_away_beyond_its_size(page):
    assert page._queue.max_size == 3  # Blocks.queue(max_size=) keeps it nowhere public


def test_the_page_sends_no_analytics(page):
    assert page.analytics_enabled is False
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"


def test_the_page_names_the_model_and_its_card_title(tmp_path):
    from derain.inference.sources import model_name, model_title, resolve_model
    from derain.webapp.page import PageSettings, build_page

    weights = resolve_model()  # the bundled model: model.safetensors in its folder
    settings = PageSettings(model_name=model_name(weights), model_title=model_title(weights))
    assert settings.model_name == "default"
    card = (weights.parent / "README.md").read_text()
    assert f"# {settings.model_title}\n" in card
    page = build_page(Restorer(tiny_elf(), device="cpu"), Workspace(tmp_path), settings)
    header = next(block.value for block in page.blocks.values() if "Model:" in str(block.value))
    assert f"Model: **default** ({settings.model_title})" in header
    assert "model.safetensors" not in header


def test_a_checkpoint_file_is_named_by_its_file(tmp_path):
    from derain.inference.sources import model_name, model_title

    (tmp_path / "rain200h.ckpt").write_bytes(b"")
    assert model_name(tmp_path / "rain200h.ckpt") == "rain200h.ckpt"
    assert model_title(tmp_path / "rain200h.ckpt") is None
