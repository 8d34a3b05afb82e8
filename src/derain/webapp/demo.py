"""The demo task behind `derain-demo`: serves the web page that derains uploaded photos, from a
config (conf/demo.yaml), until Ctrl+C (or SIGTERM); the temporary folder that holds uploads and
results goes with it.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import time

from omegaconf import DictConfig
from rich.console import Console

from derain.inference.photo_files import check_quality
from derain.inference.settings import InferenceSettings
from derain.models.ensemble import self_ensemble_name

_USED = ("ckpt_path", "device", "precision", "max_memory", "max_tile", "self_ensemble")


def self_ensemble_choice(value) -> str:
    """The page's self-ensemble choice for `self_ensemble=`: off, flips or d4 (read as
    everywhere else: `derain.inference.InferenceSettings`, "off" for one pass)."""
    return self_ensemble_name(InferenceSettings(self_ensemble=value).self_ensemble) or "off"


def check_settings(cfg: DictConfig) -> InferenceSettings:
    """The inference settings of `cfg`; raises ValueError naming the setting when one of
    conf/demo.yaml's values cannot work."""
    settings = InferenceSettings.from_config(cfg)
    settings.check_applies(_USED, "derain-demo")
    if settings.max_memory is None:
        raise ValueError("max_memory=null: the page needs a first memory budget, e.g. 2GB")
    if int(cfg.max_pixels) <= 0:
        raise ValueError(f"max_pixels={cfg.max_pixels} must be positive, e.g. max_pixels=16000000")
    if not 1 <= int(cfg.port) <= 65535:
        raise ValueError(f"port={cfg.port} is not a port number (1-65535), e.g. port=7860")
    check_quality(int(cfg.quality))
    return settings


def run(cfg: DictConfig, console: Console | None = None) -> None:
    """Loads the model, then serves the page until interrupted (see conf/demo.yaml)."""
    console = console or Console(soft_wrap=True)
    settings = check_settings(cfg)
    from derain.inference.sources import model_name, model_title, resolve_model
    from derain.webapp.workspace import check_port_free

    checkpoint = resolve_model(settings.ckpt_path)
    check_port_free(cfg.host, int(cfg.port))  # before the model loads, in derain's words
    if importlib.util.find_spec("gradio") is None:
        raise ValueError("derain-demo needs Gradio: pip install 'derain[demo]'")
    from PIL import Image

    from derain.inference import load
    from derain.webapp.workspace import Workspace

    # the page's own choices start from self_ensemble and max_memory; the restorer from neither
    restorer = load(checkpoint, settings.replace(self_ensemble=False, max_memory=None))
    restorer.activation_bytes_per_pixel  # noqa: B018 (measured once, before anyone waits on it)
    # the app's own pixel limit replaces Pillow's decompression-bomb guard, which would refuse
    # photos that max_pixels allows, with a message that does not say how to allow them
    Image.MAX_IMAGE_PIXELS = None
    workspace = Workspace()
    page = None
    try:
        os.environ.update(workspace.environment())  # before Gradio is imported
        from derain.webapp.examples import write_examples
        from derain.webapp.page import PageSettings, serve

        examples = tuple(write_examples(workspace.examples)) if cfg.examples else ()
        page_settings = PageSettings(
            model_name=model_name(checkpoint),
            model_title=model_title(checkpoint),
            max_pixels=int(cfg.max_pixels),
            max_file_size=str(cfg.max_file_size),
            self_ensemble=self_ensemble_choice(settings.self_ensemble),
            max_memory=str(settings.max_memory),
            quality=int(cfg.quality),
            queue_size=int(cfg.queue_size),
            examples=examples,
        )
        # SIGTERM (a service manager, `kill`) cleans up as Ctrl+C does
        signal.signal(signal.SIGTERM, _interrupt)
        page, url = serve(restorer, page_settings, workspace, cfg.host, int(cfg.port), block=False)
        console.print(
            f"derain-demo: serving {checkpoint} on {restorer.device} at {url}\n"
            f"temporary files: {workspace.root} (removed on exit); Ctrl+C stops",
            markup=False,
            highlight=False,
        )
        _wait_forever()
    except KeyboardInterrupt:
        console.print("derain-demo: stopped", markup=False)
    finally:
        if page is not None:
            page.close()
        workspace.close()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _wait_forever() -> None:
    while True:
        time.sleep(1.0)
