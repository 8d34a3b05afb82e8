"""The web page of `derain-demo` (Gradio): upload photos, get them back derained.

The page runs every request through one queue with one worker, so a single network pass at a
time holds memory however many people use it. Everything the app writes (uploads, results,
examples, Gradio's cache) lies in one temporary folder (`Workspace`), removed when the app
stops; set `Workspace.environment()` before this module is imported, since Gradio reads where
its files go partly at import. Importing it switches Gradio's and the Hugging Face Hub's
network features off (analytics, version check, telemetry) in any case.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from derain.webapp.workspace import (
    OFFLINE_ENVIRONMENT,
    RESULT_LIFETIME_S,
    Workspace,
    port_taken,
)

# read by Gradio and huggingface_hub when they are imported
os.environ.update(OFFLINE_ENVIRONMENT)

import gradio as gr  # noqa: E402

from derain.data.io import IMAGE_EXTENSIONS  # noqa: E402
from derain.inference import Restorer, parse_memory_size  # noqa: E402
from derain.inference.photo_files import DEFAULT_QUALITY, check_quality  # noqa: E402
from derain.webapp.uploads import derain_photos  # noqa: E402

ENSEMBLE_CHOICES = [
    ("one pass", "off"),
    ("4 flips (4× the time)", "flips"),
    ("8 flips and turns (8× the time)", "d4"),
]
"""(label, value) of the self-ensemble choices; values are `Restorer`'s `self_ensemble`."""

MEMORY_CHOICES = ["256MB", "512MB", "1GB", "2GB", "4GB", "8GB", "16GB"]
"""Memory budgets the page offers (`Restorer`'s `max_memory`); larger photos go in more tiles."""


_USER_ERROR = {"duration": None, "print_exception": False}
"""A person's mistake stays on the page until closed, and is no server trouble to log."""


@dataclass(frozen=True)
class PageSettings:
    """What the page offers and accepts (see conf/demo.yaml for each setting)."""

    model_name: str
    model_title: str | None = None
    max_pixels: int = 16_000_000
    max_file_size: str = "50MB"
    self_ensemble: str = "off"
    max_memory: str = "2GB"
    quality: int = DEFAULT_QUALITY
    queue_size: int = 8
    examples: tuple[Path, ...] = ()


def build_page(restorer: Restorer, workspace: Workspace, settings: PageSettings) -> gr.Blocks:
    """The Gradio app: uploads and settings on the left, results on the right.

    Its API (`gradio_client`) has one endpoint, `/derain`: (files, self_ensemble, max_memory,
    quality) → (before/after, rain layer, report, result files, shown photo, state). On the
    page, each click first empties the result panels, so an error never sits above an earlier
    request's results.
    """
    image_types = sorted(IMAGE_EXTENSIONS)
    check_quality(settings.quality)

    def run(paths, self_ensemble, max_memory, quality, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        if not paths:
            raise gr.Error("Upload one or more photos first, or click an example.", **_USER_ERROR)
        try:
            check_quality(int(quality))
        except (TypeError, ValueError) as err:
            raise gr.Error(str(err), **_USER_ERROR) from None
        start = time.perf_counter()
        results, errors = derain_photos(
            restorer,
            workspace,
            settings.max_pixels,
            [str(path) for path in paths],
            self_ensemble,
            max_memory,
            progress=lambda fraction, text: progress(fraction, desc=text),
            quality=int(quality),
        )
        if not results:
            raise gr.Error("\n".join(errors), **_USER_ERROR)
        for message in errors:
            gr.Warning(message, duration=None)
        first = results[0]
        shown_choices = [(result["name"], result["key"]) for result in results]
        ensemble_label = {value: label for label, value in ENSEMBLE_CHOICES}.get(self_ensemble)
        report = "\n".join(
            [f"- {result['summary']}" for result in results]
            + [f"- **skipped**: {message}" for message in errors]
            + [
                f"\n{len(results)} of {len(paths)} photo(s) derained in "
                f"{time.perf_counter() - start:.1f} s ({ensemble_label}, memory budget "
                f"{max_memory})"
            ]
        )
        return (
            (first["before"], first["after"]),
            first["rain"],
            report,
            [result["output"] for result in results],
            gr.update(choices=shown_choices, value=first["key"], visible=len(results) > 1),
            results,
        )

    def cleared():
        return None, None, "", None, gr.update(choices=[], value=None, visible=False), []

    def show(key, results):
        for result in results or []:
            if result["key"] == key:
                return (result["before"], result["after"]), result["rain"]
        return gr.update(), gr.update()

    with gr.Blocks(
        title="derain", analytics_enabled=False, delete_cache=(600, RESULT_LIFETIME_S)
    ) as page:
        gr.Markdown(
            "# derain: remove rain from photos\n"
            f"Model: **{settings.model_name}**"
            + (f" ({settings.model_title})" if settings.model_title else "")
            + f" on {restorer.device}. Photos up to "
            f"{settings.max_pixels / 1e6:.0f} MP and {settings.max_file_size}; results keep "
            "the full resolution and the format of each upload."
        )
        with gr.Row():
            with gr.Column(scale=2):
                files = gr.File(
                    label="Photos",
                    file_count="multiple",
                    file_types=image_types,
                    elem_id="photos",
                )
                if settings.examples:
                    gr.Examples(
                        examples=[[[str(path)]] for path in settings.examples],
                        inputs=[files],
                        label="Examples with synthetic rain (click one, then Derain)",
                        example_labels=[path.stem.replace("_", " ") for path in settings.examples],
                    )
                ensemble = gr.Radio(
                    ENSEMBLE_CHOICES,
                    value=settings.self_ensemble,
                    label="Self-ensemble: average over flipped copies (slower, a little better)",
                )
                memory = gr.Dropdown(
                    sorted({*MEMORY_CHOICES, settings.max_memory}, key=_memory_order),
                    value=settings.max_memory,
                    label="Memory budget (larger photos are derained in tiles that fit)",
                )
                quality = gr.Slider(
                    1,
                    100,
                    value=settings.quality,
                    step=1,
                    label="JPEG and WebP quality (other formats are lossless)",
                    elem_id="quality",
                )
                button = gr.Button("Derain", variant="primary", elem_id="derain")
            with gr.Column(scale=3):
                slider = gr.ImageSlider(label="Before / after", type="filepath", elem_id="slider")
                shown = gr.Dropdown(label="Photo shown", visible=False, elem_id="shown")
                rain = gr.Image(
                    label="Removed rain",
                    type="filepath",
                    elem_id="rain",
                    buttons=["download", "fullscreen"],
                )
                report = gr.Markdown(label="Report", elem_id="report")
                downloads = gr.File(
                    label="Derained photos (full resolution)",
                    file_count="multiple",
                    elem_id="downloads",
                )
        state = gr.State([])
        results = [slider, rain, report, downloads, shown, state]
        button.click(
            cleared, outputs=results, queue=False, show_progress="hidden", api_visibility="private"
        ).then(
            run,
            inputs=[files, ensemble, memory, quality],
            outputs=results,
            api_name="derain",
            concurrency_limit=1,  # one network pass at a time, however many people wait
        )
        shown.change(show, inputs=[shown, state], outputs=[slider, rain], api_visibility="private")
    page.queue(default_concurrency_limit=1, max_size=settings.queue_size)
    return page


def serve(
    restorer: Restorer,
    settings: PageSettings,
    workspace: Workspace,
    host: str = "127.0.0.1",
    port: int = 7860,
    block: bool = True,
) -> tuple[gr.Blocks, str]:
    """Builds the page and starts its server on host:port; returns (page, its address).

    Gradio keeps uploads and its cache in `workspace.uploads`. With `block`, returns only when
    the server stops (Ctrl+C).
    """
    os.environ["GRADIO_TEMP_DIR"] = str(workspace.uploads)
    page = build_page(restorer, workspace, settings)
    try:
        _, url, _ = page.launch(
            server_name=host,
            server_port=port,
            share=False,
            inbrowser=False,
            quiet=True,
            prevent_thread_lock=True,
            max_file_size=settings.max_file_size,
            ssr_mode=False,
            mcp_server=False,
            footer_links=["api"],
        )
    except OSError as err:  # taken between derain-demo's own check and now
        raise ValueError(port_taken(host, port, str(err).split(".")[0])) from None
    if block:
        page.block_thread()
    return page, url


def _memory_order(size: str) -> int:
    return parse_memory_size(size)
