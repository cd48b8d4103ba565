"""Running ``edged teacher``: build the model client, the answer store and the responder from the
settings, run until SIGTERM/SIGINT (or until a thread dies: exit 1, and systemd restarts it)."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from edged import __version__
from edged.analysis.tasks import CLASSIFY, build_specs
from edged.backends.openai_http import OpenAIHttpConfig, create as create_openai_http
from edged.config import ConfigError, LoadedConfig
from edged.systemd import Notifier
from edged.teacher.answers import AnswerStore
from edged.teacher.responder import Answerer, Teacher

log = logging.getLogger(__name__)

HEALTH_CHECK_S = 1.0


def model_config(t) -> OpenAIHttpConfig:
    return OpenAIHttpConfig(
        url=t.model_url, model=t.model, api_key_file=t.api_key_file, timeout_s=t.timeout_s,
        structured_output=t.structured_output,
    )


def run_teacher(loaded: LoadedConfig) -> int:
    s = loaded.settings
    t = s.teacher
    origin = loaded.path or "built-in defaults"
    if not t.url:
        raise ConfigError(f"{origin}: [teacher] url: not set (the broker the boxes escalate to)")
    backend = create_openai_http(model_config(t))  # ModelUnavailable when the server cannot be reached
    answers = AnswerStore(t.answers_path)
    try:
        teacher = Teacher(t, Answerer(backend, build_specs(s.analysis)[CLASSIFY], t.max_attempts), answers)
    except ValueError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda n, f: stop.set())
    notifier = Notifier()
    teacher.start()
    print(
        "\n".join([
            f"edged {__version__} teacher running (stop with Ctrl-C or SIGTERM)",
            f"  config:   {loaded.path or 'none found; embedded defaults'}",
            f"  broker:   {teacher.address} as {t.client_id}, topics {', '.join(t.topics)}",
            f"  model:    {backend.model_name} at {t.model_url}",
            f"  labels:   {', '.join(s.analysis.labels)}",
            f"  answers:  {t.answers_path} ({answers.count()} kept)",
        ]),
        file=sys.stderr, flush=True,
    )
    log.info("edged teacher ready")
    notifier.ready()
    code = 0
    while not stop.wait(HEALTH_CHECK_S):
        if not teacher.is_alive():
            log.error("a teacher thread died; exiting so the service manager restarts it")
            code = 1
            break
        notifier.status(f"{teacher.answered} answered, {teacher.repeated} repeated, {teacher.failed} unanswerable")
    notifier.stopping()
    teacher.stop()
    answers.close()
    backend.close()
    notifier.close()
    return code
