"""`derain-demo`: a local web page that derains uploaded photos.

    derain-demo ckpt_path=logs/demo/runs/RUN/checkpoints/last.ckpt
    derain-demo ckpt_path=model.safetensors host=127.0.0.1 port=7860

Serves until Ctrl+C (or SIGTERM); the temporary folder that holds uploads and results goes
with it.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time

import hydra
from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape

from derain.models.ensemble import SELF_ENSEMBLES, self_ensemble_name
from derain.paths import config_dir


def self_ensemble_choice(value) -> str:
    """The page's self-ensemble choice for `self_ensemble=`: off, flips or d4 (read as
    everywhere else: `derain.models.ensemble.self_ensemble_name`, "off" for one pass)."""
    try:
        return self_ensemble_name(value) or "off"
    except ValueError:
        choices = ", ".join(["off", *SELF_ENSEMBLES])
        raise ValueError(f"self_ensemble={value} is not one of {choices}") from None


def check_settings(cfg: DictConfig) -> None:
    """Raises ValueError naming the setting when one of conf/demo.yaml's values cannot work."""
    self_ensemble_choice(cfg.self_ensemble)
    if int(cfg.max_pixels) <= 0:
        raise ValueError(f"max_pixels={cfg.max_pixels} must be positive, e.g. max_pixels=16000000")
    if not 1 <= int(cfg.port) <= 65535:
        raise ValueError(f"port={cfg.port} is not a port number (1-65535), e.g. port=7860")


def run(cfg: DictConfig, console: Console) -> None:
    """Loads the model, then serves the page until interrupted (see conf/demo.yaml)."""
    check_settings(cfg)
    from derain.inference.sources import model_name, model_title, resolve_model
    from derain.webapp.workspace import check_port_free

    checkpoint = resolve_model(cfg.ckpt_path)
    check_port_free(cfg.host, int(cfg.port))  # before the model loads, in derain's words
    if importlib.util.find_spec("gradio") is None:
        raise ValueError("derain-demo needs Gradio: pip install 'derain[demo]'")
    from PIL import Image

    from derain.inference import load, parse_memory_size
    from derain.webapp.workspace import Workspace

    parse_memory_size(cfg.max_memory)  # a bad value fails here, not in the page
    restorer = load(checkpoint, device=cfg.device, precision=cfg.precision)
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
        settings = PageSettings(
            model_name=model_name(checkpoint),
            model_title=model_title(checkpoint),
            max_pixels=int(cfg.max_pixels),
            max_file_size=str(cfg.max_file_size),
            self_ensemble=self_ensemble_choice(cfg.self_ensemble),
            max_memory=str(cfg.max_memory),
            queue_size=int(cfg.queue_size),
            examples=examples,
        )
        # SIGTERM (a service manager, `kill`) cleans up as Ctrl+C does
        signal.signal(signal.SIGTERM, _interrupt)
        page, url = serve(restorer, settings, workspace, cfg.host, int(cfg.port), block=False)
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


@hydra.main(version_base=None, config_path=str(config_dir()), config_name="demo")
def _app(cfg: DictConfig) -> None:
    console = Console(soft_wrap=True)
    try:
        run(cfg, console)
    except (FileNotFoundError, ValueError, OSError) as err:
        # the message names the file or setting and the fix; a traceback would only bury it
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]derain-demo: error:[/] {escape(str(err))}", highlight=False
        )
        sys.exit(1)


def main() -> None:
    _app()


if __name__ == "__main__":
    main()
