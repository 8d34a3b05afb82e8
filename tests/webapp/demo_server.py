"""`derain-demo` started as a person starts it, in a process of its own, on a free local port.

The process runs with its own empty HOME, TMPDIR and working folder, and under `offline_guard`,
so tests can check afterwards that it wrote nothing outside its temporary folder and contacted
no outside host.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from offline_guard import LOG_VARIABLE

STARTUP_TIMEOUT_S = 180
_ADDRESS = re.compile(r"derain-demo: serving .* at (http://\S+)")
_TEMPORARY = re.compile(r"temporary files: (\S+)")
_RUN = (
    "import sys, offline_guard; offline_guard.install(); sys.argv[0] = 'derain-demo'; "
    "from derain.cli.demo import main; main()"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class DemoServer:
    """A running `derain-demo`: its address, its sandbox folders and what it printed."""

    process: subprocess.Popen
    root: Path
    url: str = ""
    workspace: Path | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    @property
    def network_log(self) -> Path:
        return self.root / "network.log"

    def outside_contacts(self) -> list[str]:
        """The outside hosts the app tried to reach (refused by `offline_guard`)."""
        return self.network_log.read_text().splitlines() if self.network_log.exists() else []

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def start_demo(checkpoint: Path, root: Path, *overrides: str) -> DemoServer:
    """Starts `derain-demo ckpt_path=checkpoint port=<free> *overrides` in sandbox folders
    under `root`; returns once it prints its address."""
    for folder in ("home", "tmp", "cwd"):
        (root / folder).mkdir(parents=True)
    tests = Path(__file__).parent
    env = {
        **os.environ,
        "HOME": str(root / "home"),
        "TMPDIR": str(root / "tmp"),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tests), os.environ.get("PYTHONPATH")])),
        LOG_VARIABLE: str(root / "network.log"),
    }
    arguments = [f"ckpt_path={checkpoint}", f"port={free_port()}", *overrides]
    process = subprocess.Popen(
        [sys.executable, "-c", _RUN, *arguments],
        cwd=root / "cwd",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = DemoServer(process, root)
    ready = threading.Event()

    def read() -> None:
        for line in process.stdout:
            server.lines.append(line)
            if found := _TEMPORARY.search(line):
                server.workspace = Path(found.group(1))
            if found := _ADDRESS.search(line):
                server.url = found.group(1)
            if server.url and server.workspace:
                ready.set()
        ready.set()  # the process ended

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(STARTUP_TIMEOUT_S) or not server.url or not server.workspace:
        server.stop()
        raise AssertionError(f"derain-demo did not start:\n{server.output()[-3000:]}")
    return server
