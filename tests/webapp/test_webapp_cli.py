"""`derain-demo`'s command line: help, and the errors it stops with before serving anything."""

from __future__ import annotations

import socket

import pytest

from derain.inference import bundled_models
from derain.webapp.demo import self_ensemble_choice
from helpers import run_cli


def test_help_explains_the_settings_and_shows_how_to_start_it(tmp_path):
    help_text = run_cli("derain-demo", "--help", cwd=tmp_path).stdout
    for words in (
        "ckpt_path",
        "host, port",
        "max_pixels",
        "max_file_size",
        "derain-demo ckpt_path=",
    ):
        assert words in help_text
    assert "host: 127.0.0.1" in help_text
    assert not any(tmp_path.iterdir())


def test_an_unknown_model_name_stops_it_with_the_names_it_knows(tmp_path):
    # (with no model bundled, ckpt_path=null fails the same way: tests/inference/test_sources.py)
    proc = run_cli("derain-demo", "ckpt_path=drizzle", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "no model 'drizzle'" in proc.stderr and "give ckpt_path=" in proc.stderr
    known = ", ".join(bundled_models()) or "none in this installation"
    assert known in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_checkpoint_that_does_not_exist_is_named(tmp_path):
    proc = run_cli("derain-demo", "ckpt_path=missing.ckpt", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "missing.ckpt does not exist" in proc.stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("self_ensemble=twice", "self_ensemble=twice is not one of off, flips, d4"),
        ("max_pixels=0", "max_pixels=0 must be positive"),
        ("port=70000", "port=70000 is not a port number"),
        ("quality=0", "quality=0 must be 1-100"),
    ],
)
def test_a_setting_that_cannot_work_is_named_with_what_would(tmp_path, setting, message):
    proc = run_cli("derain-demo", setting, cwd=tmp_path, check=False)
    assert proc.returncode == 1 and message in proc.stderr


@pytest.mark.parametrize(
    ("value", "choice"), [(False, "off"), (None, "off"), (True, "d4"), ("flips", "flips")]
)
def test_self_ensemble_reads_like_derain_predicts(value, choice):
    assert self_ensemble_choice(value) == choice


def test_a_busy_port_stops_it_with_derains_own_setting(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("derain-demo", f"port={port}", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert f"port={port} on 127.0.0.1 is taken" in proc.stderr
    assert f"derain-demo port={port + 1}" in proc.stderr
    assert "GRADIO_SERVER_PORT" not in proc.stderr and "Traceback" not in proc.stderr
