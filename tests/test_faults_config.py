"""Every configuration mistake: ``edged config check`` and ``edged run`` refuse it alike, with the key,
exit status 2 and no traceback; ``run`` refuses before it starts anything (no web page). ``config
check`` runs in-process (the same ``main``), ``run`` as the real process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edged import cli
from tests.support.mounts import remount_readonly, tmpfs

REPO = Path(__file__).resolve().parents[1]


def base(tmp: Path) -> str:
    return (f'[store]\npath = "{tmp}/state/edged.db"\n[logs]\npaths = ["{tmp}/logs/*.log"]\n'
            '[analysis]\nenabled = false\n[web]\nlisten = "127.0.0.1:0"\n')


def with_section(text: str, section: str, lines: str) -> str:
    """``text`` with ``lines`` added to ``[section]`` (the section added if it is not there)."""
    header = f"[{section}]\n"
    if header in text:
        return text.replace(header, header + lines + "\n", 1)
    return text + header + lines + "\n"


# name -> (how to make the mistake, text every refusal must contain)
def mistakes(tmp: Path) -> dict:
    secret = tmp / "secret"
    secret.write_text("s3cret\n")
    creds = tmp / "creds"
    creds.mkdir(exist_ok=True)
    (creds / "mqtt_password").write_text("from-credential\n")
    (tmp / "a-directory.db").mkdir(exist_ok=True)
    (tmp / "a-file").write_text("x")
    m = {
        "unknown key": ({"mqtt": 'urll = "mqtt://broker"'}, "unknown key [mqtt] urll"),
        "unknown section": ({"fo": "x = 1"}, "unknown key fo"),
        "wrong type": ({"store": 'batch_max_rows = "many"'}, "[store] batch_max_rows"),
        "tiny size cap": ({"store": "max_bytes = 5"}, "[store] max_bytes"),
        "low water above high": ({"store": "high_water = 10\nlow_water = 20"}, "[store] low_water"),
        "bad multiline regex": ({"logs": 'multiline_start = "("'}, "[logs] multiline_start"),
        "bad machine regex": ({"logs": 'machine_pattern = "["'}, "[logs] machine_pattern"),
        "http url": ({"mqtt": 'url = "http://broker"'}, "[mqtt] url"),
        "password in url": ({"mqtt": 'url = "mqtt://u:hunter2@broker"'}, "[mqtt] url"),
        "port out of range": ({"mqtt": 'url = "mqtt://broker:99999"'}, "[mqtt] url"),
        "no host": ({"mqtt": 'url = "mqtt://"'}, "[mqtt] url"),
        "path in url": ({"mqtt": 'url = "mqtt://broker/topic"'}, "[mqtt] url"),
        "qos 2": ({"mqtt": "qos = 2"}, "[mqtt] qos"),
        "password, no user": ({"mqtt": 'url = "mqtt://broker"\npassword = "pw"'}, "[mqtt] password"),
        "password file, no user": ({"mqtt": f'url = "mqtt://broker"\npassword_file = "{secret}"'},
                                   "[mqtt] password_file"),
        "credential, no user": ({"mqtt": 'url = "mqtt://broker"', "env": {"CREDENTIALS_DIRECTORY": str(creds)}},
                                "[mqtt] password"),
        "upstream password, no user": ({"upstream": 'url = "mqtts://central"\npassword = "pw"'},
                                       "[upstream] password"),
        "one client id twice": ({"mqtt": 'url = "mqtt://broker"\nclient_id = "box"',
                                 "upstream": 'url = "mqtt://central"\nclient_id = "box"'}, "[upstream] client_id"),
        "unknown topic level": ({"upstream": 'topic = "{prefix}/{oops}"'}, "[upstream] topic"),
        "wildcard in topic": ({"upstream": 'topic = "{prefix}/+/{kind}"'}, "[upstream] topic"),
        "bad response topic": ({"upstream": 'response_topic = "{prefix}/{kind}"'}, "[upstream] response_topic"),
        "slash in site": ({"upstream": 'site = "a/b"'}, "[upstream] site"),
        "inflight 0": ({"upstream": "inflight = 0"}, "[upstream] inflight"),
        "missing password file": ({"mqtt": f'url = "mqtt://u@broker"\npassword_file = "{tmp}/none"'},
                                  "[mqtt] password_file"),
        "listen without host": ({"web": 'listen = "8080"'}, "[web] listen"),
        "short token": ({"web": 'token = "short"'}, "[web] token"),
        "missing token file": ({"web": f'token_file = "{tmp}/none"'}, "[web] token_file"),
        "duplicate labels": ({"analysis": 'labels = ["a", "a"]'}, "[analysis] labels"),
        "severity 9": ({"triage": "severities = {normal = 9}"}, "[triage] severities"),
        "unknown backend": ({"backend": 'type = "nope"'}, "[backend]"),
        "log level": ({"logging": 'level = "LOUD"'}, "[logging] level"),
        "database path is a directory": ({"store": f'path = "{tmp}/a-directory.db"'}, "[store] path"),
        "database under a file": ({"store": f'path = "{tmp}/a-file/edged.db"'}, "[store] path"),
        "unknown model": ({"analysis": "enabled = true", "model": 'name = "no-such-model"'}, "no-such-model"),
        "missing model file": ({"analysis": "enabled = true", "model": f'path = "{tmp}/none.gguf"'}, "none.gguf"),
        "unknown environment key": ({"env": {"EDGED_FOO": "1"}}, "EDGED_FOO"),
        "environment list not JSON": ({"env": {"EDGED_MQTT__TOPICS": "a,b"}}, "EDGED_MQTT__TOPICS"),
        "environment wrong type": ({"env": {"EDGED_STORE__BATCH_MAX_ROWS": "abc"}}, "EDGED_STORE__BATCH_MAX_ROWS"),
    }
    return m


def write(tmp: Path, change: dict) -> Path:
    text = base(tmp)
    for section, lines in change.items():
        if section == "env":
            continue
        for line in lines.splitlines():  # a key the base config sets is replaced, not repeated
            key = line.split("=")[0].strip()
            text = re.sub(rf"(?m)^{re.escape(key)} = .*\n", "", text) if key in ("path", "enabled", "listen") else text
        text = with_section(text, section, lines)
    path = tmp / "edged.toml"
    path.write_text(text)
    return path


def clean_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith("EDGED_") and k not in ("STATE_DIRECTORY", "CREDENTIALS_DIRECTORY")}
    env["PYTHONPATH"] = str(REPO)
    return env | (extra or {})


def check_in_process(path: Path, env: dict, monkeypatch, capsys) -> tuple[int, str]:
    with monkeypatch.context() as m:
        for name in list(os.environ):
            if name.upper().startswith("EDGED_") or name in ("STATE_DIRECTORY", "CREDENTIALS_DIRECTORY"):
                m.delenv(name)
        for name, value in env.items():
            m.setenv(name, value)
        code = cli.main(["config", "check", "--config", str(path)])
    out = capsys.readouterr()
    return code, out.out + out.err


def run_process(path: Path, env: dict, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edged", "run", "--config", str(path)], cwd=cwd,
                          env=clean_env(env), capture_output=True, text=True, timeout=60)




def _names() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return list(mistakes(Path(tmp)))


@pytest.mark.parametrize("name", _names())
def test_check_and_run_refuse_the_mistake_alike(name, tmp_path, monkeypatch, capsys):
    change, expected = mistakes(tmp_path)[name]
    env = change.get("env", {})
    path = write(tmp_path, change)
    code, checked = check_in_process(path, env, monkeypatch, capsys)
    ran = run_process(path, env, tmp_path)
    assert code == 2, checked
    assert ran.returncode == 2, ran.stderr[-2000:]
    for output in (checked, ran.stderr):
        assert expected in output, output
        assert "Traceback" not in output
    assert "web page on" not in ran.stderr and "ready" not in ran.stderr


def test_a_read_only_database_directory_and_file(tmp_path, monkeypatch, capsys):
    with tmpfs(tmp_path / "ro", "1m") as ro:
        (ro / "state").mkdir()
        (ro / "state" / "edged.db").write_bytes(b"")
        remount_readonly(ro)
        for db in (ro / "state" / "edged.db", ro / "state" / "new.db"):
            path = write(tmp_path, {"store": f'path = "{db}"'})
            code, checked = check_in_process(path, {}, monkeypatch, capsys)
            ran = run_process(path, {}, tmp_path)
            assert code == 2 and ran.returncode == 2, (checked, ran.stderr)
            for output in (checked, ran.stderr):
                assert "[store] path" in output and "Traceback" not in output


def test_a_port_in_use_stops_run_before_anything_starts(tmp_path):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    path = write(tmp_path, {})
    path.write_text(path.read_text().replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"'))
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_text("a line that must not be read\n")
    ran = run_process(path, {}, tmp_path)
    taken.close()
    assert ran.returncode == 2 and "[web] listen" in ran.stderr and "Traceback" not in ran.stderr
    import sqlite3

    conn = sqlite3.connect(tmp_path / "state" / "edged.db")
    assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == 0  # no source had started
    conn.close()
