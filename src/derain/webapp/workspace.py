"""The web app's temporary folder, and the environment that keeps Gradio inside it and offline."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path

OFFLINE_ENVIRONMENT = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_SSR_MODE": "False",
}
"""Switches off Gradio's analytics and version check, the Hugging Face Hub's telemetry and
downloads, and the Node server of server-side rendering: the app contacts no outside host."""

RESULT_LIFETIME_S = 3600
"""Results and uploads older than this are deleted while the app runs (and all at its end)."""


class Workspace:
    """A temporary folder for everything the app writes, removed by `close`.

    `uploads/` is Gradio's cache (uploaded files and the files it serves), `results/<request>/`
    holds each request's outputs and `examples/` the example photos.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = (
            Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="derain-demo-"))
        )
        self.uploads = self.root / "uploads"
        self.results = self.root / "results"
        self.examples = self.root / "examples"
        for folder in (self.uploads, self.results, self.examples):
            folder.mkdir(parents=True, exist_ok=True)

    def environment(self) -> dict[str, str]:
        """Variables to set before Gradio is imported: `OFFLINE_ENVIRONMENT`, GRADIO_TEMP_DIR
        (which Gradio reads partly at import) and MPLCONFIGDIR (Gradio imports Matplotlib for
        every request, and Matplotlib would write its font cache into the home folder)."""
        return {
            **OFFLINE_ENVIRONMENT,
            "GRADIO_TEMP_DIR": str(self.uploads),
            "MPLCONFIGDIR": str(self.root / "matplotlib"),
        }

    def new_request(self) -> Path:
        """A fresh folder for one request's results, after deleting those of requests older
        than `RESULT_LIFETIME_S`."""
        now = time.time()
        for old in self.results.iterdir():
            if now - old.stat().st_mtime > RESULT_LIFETIME_S:
                shutil.rmtree(old, ignore_errors=True)
        folder = self.results / uuid.uuid4().hex
        folder.mkdir()
        return folder

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def check_port_free(host: str, port: int) -> None:
    """Raises ValueError naming `port=` when another program already listens on host:port."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ValueError(port_taken(host, port, err.strerror or str(err))) from None


def port_taken(host: str, port: int, reason: str = "in use") -> str:
    """The message for a port that cannot be served: the setting that changes it."""
    other = port + 1 if port < 65535 else 7860
    return (
        f"port={port} on {host} is taken ({reason}): another derain-demo or another program "
        f"serves there; stop it, or choose another port, e.g. derain-demo port={other}"
    )
