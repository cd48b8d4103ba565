"""The Ansible role and playbook (ansible/): lint, syntax, a real converge and the health gate.

The converge runs site.yml against this machine (connection local) with every path under a temporary root
and systemd left alone (edged_manage_service: false): it installs edged into a venv from a wheel built here
plus a wheelhouse prepared by ansible/wheelhouse.sh (an offline install, as on a box), ships the real model,
renders the config and checks it with the installed edged. A second converge must change nothing. Then
the installed edged, started from the installed venv with the rendered config, must answer /healthz; the
role's health gate must pass against it; a rollout whose first box fails the gate must stop there; a bad
config key must fail the box without touching the live file; and an upgrade to a new version followed by
-e edged_version=<old> must switch releases back and forth without reinstalling the kept one.
"""

from __future__ import annotations

import getpass
import grp
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from tests.support.mosquitto import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (REPO / "edged" / "__init__.py").read_text()).group(1)
MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

if shutil.which("ansible-playbook", path=str(BIN)) is None:
    pytest.skip("ansible-core is not installed (pip install -e '.[test]')", allow_module_level=True)


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGED_", "ANSIBLE_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        ANSIBLE_CONFIG=str(ANSIBLE / "ansible.cfg"),
        ANSIBLE_HOME=str(tmp / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LINT_SKIP_SCHEMA_UPDATE="1",
        NO_COLOR="1",
    )
    return env


def _run(cmd: list[str], tmp: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """An Ansible command in ansible/ (where ansible.cfg and .ansible-lint are), output captured."""
    return subprocess.run(cmd, cwd=ANSIBLE, env=_env(tmp), capture_output=True, text=True, timeout=timeout)


def _recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines -> {host: {"ok": n, "changed": n, ...}}."""
    hosts = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", output, re.M):
        hosts[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return hosts


def _pip_wheel(src: Path, dest: Path) -> None:
    """What `make dist` does: the edged wheel of a source tree."""
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(dest), str(src)]
    built = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr


def _installed_version(venv: Path) -> str:
    return subprocess.run([str(venv / "bin/edged"), "version"], capture_output=True, text=True).stdout.strip()


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


# --- static checks ---------------------------------------------------------------------------------------


def test_ansible_lint_production_profile(tmp_path: Path) -> None:
    # --offline: nothing is fetched from Galaxy (the role uses ansible.builtin only).
    result = _run([str(BIN / "ansible-lint"), "--offline", "--profile", "production", "--nocolor"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_playbook_syntax(tmp_path: Path) -> None:
    result = _run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "inventory/example.ini", "site.yml"],
                  tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rollout_is_serial_and_stops_at_the_first_failure() -> None:
    import yaml

    plays = {play["hosts"]: play for play in yaml.safe_load((ANSIBLE / "site.yml").read_text())}
    assert set(plays) == {"edged", "teacher"}
    play = plays["edged"]
    assert play["max_fail_percentage"] == 0
    assert play["any_errors_fatal"] is True
    assert "serial" in play


def test_model_variables_match_the_manifest() -> None:
    import yaml

    manifest = tomllib.loads((REPO / "edged" / "models" / "manifest.toml").read_text())["models"]
    sources = [ANSIBLE / "roles/edged/defaults/main.yml", *sorted((ANSIBLE / "inventory/group_vars").glob("*.yml"))]
    for path in sources:
        data = yaml.safe_load(path.read_text()) or {}
        if "edged_model_name" in data:
            entry = manifest[data["edged_model_name"]]
            assert data["edged_model_file"] == entry["file"], path
            assert data["edged_model_sha256"] == entry["sha256"], path


# --- converge ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make dist` (pip wheel --no-deps .) and ansible/wheelhouse.sh native, into a temporary directory."""
    tmp = tmp_path_factory.mktemp("dist")
    _pip_wheel(REPO, tmp)
    wheel = tmp / f"edged-{VERSION}-py3-none-any.whl"
    assert wheel.exists(), list(tmp.iterdir())
    out = tmp / "wheelhouse"
    env = {**os.environ, "PYTHON": sys.executable, "EDGED_WHEEL": str(wheel), "WHEELHOUSE_DIR": str(out)}
    result = subprocess.run(["bash", str(ANSIBLE / "wheelhouse.sh"), "native"], env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def converged(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path):
    tmp = tmp_path_factory.mktemp("converge")
    root = tmp / "root"
    root.mkdir()
    port = free_port()
    user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    inventory = tmp / "inventory.ini"
    inventory.write_text(
        "[edged]\n"
        f"box ansible_connection=local ansible_python_interpreter={sys.executable} ansible_become=false\n"
    )
    extra = {
        "edged_root": str(root),
        "edged_manage_packages": False,
        "edged_manage_user": False,
        "edged_manage_service": False,
        "edged_user": user, "edged_group": group, "edged_files_owner": user, "edged_files_group": group,
        "edged_wheelhouse_dir": str(wheelhouse),
        "edged_python": sys._base_executable,
        "edged_web_listen": f"127.0.0.1:{port}",
        "edged_site": "test-plant",
        "edged_backend_threads": 1,
        "edged_log_paths": ["/var/log/machines/*.log"],
        # Keys beyond the role's own variables go through edged_config (a table rendered inline).
        "edged_config": {"analysis": {"labels": ["normal", "fault"], "extract_fields": {"machine": "string"}},
                         "store": {"check_interval_s": 1.0}},
    }
    extra_file = tmp / "vars.json"
    extra_file.write_text(json.dumps(extra))
    cmd = [str(BIN / "ansible-playbook"), "-i", str(inventory), "-e", f"@{extra_file}", "site.yml"]
    started = time.monotonic()
    first = _run(cmd, tmp)
    first_s = time.monotonic() - started
    second = _run(cmd, tmp)
    return {"root": root, "port": port, "tmp": tmp, "inventory": inventory, "extra_file": extra_file,
            "first": first, "second": second, "first_s": first_s}


def test_converge_installs_everything_under_the_root(converged) -> None:
    first, root = converged["first"], converged["root"]
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    recap = _recap(first.stdout)
    assert recap["box"]["failed"] == 0 and recap["box"]["changed"] > 0, first.stdout[-3000:]

    release = root / "opt/edged/releases" / VERSION
    link = root / "opt/edged/venv"
    assert link.is_symlink() and link.resolve() == (release / "venv").resolve()
    assert (release / ".installed").read_text().strip() == VERSION
    assert (release / "wheels" / f"edged-{VERSION}-py3-none-any.whl").exists()
    assert _installed_version(link) == f"edged {VERSION}"

    model = root / "var/lib/edged/models" / MODEL.name
    assert hashlib.sha256(model.read_bytes()).hexdigest() == hashlib.sha256(MODEL.read_bytes()).hexdigest()

    assert (root / "etc/systemd/system/edged.service").read_text() == (REPO / "systemd/edged.service").read_text()
    assert not (root / "etc/systemd/system/edged.service.d/credentials.conf").exists()
    assert oct((root / "var/log/machines").stat().st_mode & 0o7777) == "0o2750"

    config = tomllib.loads((root / "etc/edged/edged.toml").read_text())
    assert config["store"]["path"] == f"{root}/var/lib/edged/edged.db"
    assert config["store"]["check_interval_s"] == 1.0
    assert config["logs"]["paths"] == [f"{root}/var/log/machines/*.log"]
    assert config["model"] == {"name": "smollm2-135m-instruct", "dir": f"{root}/var/lib/edged/models"}
    assert config["backend"] == {"type": "llama_cpp", "threads": 1, "n_gpu_layers": 0}
    assert config["upstream"]["site"] == "test-plant" and config["upstream"]["node"] == "box"
    assert config["analysis"] == {"labels": ["normal", "fault"], "extract_fields": {"machine": "string"}}
    assert config["web"]["listen"] == f"127.0.0.1:{converged['port']}"
    assert "url" not in config["mqtt"]


def test_second_converge_changes_nothing(converged) -> None:
    second = converged["second"]
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-3000:]
    recap = _recap(second.stdout)
    changed = re.findall(r"^changed: \[box\].*$", second.stdout, re.M)
    assert recap["box"]["changed"] == 0 and recap["box"]["failed"] == 0, changed or second.stdout[-3000:]


def test_teacher_play_converges_and_a_second_run_changes_nothing(converged) -> None:
    tmp, root = converged["tmp"], converged["root"]
    inventory = tmp / "teacher.ini"
    inventory.write_text(
        "[teacher]\n"
        f"central ansible_connection=local ansible_python_interpreter={sys.executable} ansible_become=false\n"
    )
    teacher_vars = {"edged_teacher_url": "mqtt://teacher@127.0.0.1:1883", "edged_teacher_labels": ["normal", "fault"],
                    "edged_teacher_config": {"teacher": {"timeout_s": 300}}}
    cmd = [str(BIN / "ansible-playbook"), "-i", str(inventory), "-e", f"@{converged['extra_file']}",
           "-e", json.dumps(teacher_vars), "site.yml"]
    first = _run(cmd, tmp)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    assert _recap(first.stdout)["central"]["failed"] == 0
    unit = root / "etc/systemd/system/edged-teacher.service"
    assert unit.read_text() == (REPO / "systemd/edged-teacher.service").read_text()
    config = tomllib.loads((root / "etc/edged/teacher.toml").read_text())
    assert config["teacher"]["url"] == "mqtt://teacher@127.0.0.1:1883"
    assert config["teacher"]["answers_path"] == f"{root}/var/lib/edged-teacher/teacher.db"
    assert config["teacher"]["timeout_s"] == 300 and config["analysis"] == {"enabled": False, "labels": ["normal", "fault"]}
    assert not (root / "etc/systemd/system/edged-teacher.service.d/credentials.conf").exists()
    second = _run(cmd, tmp)
    recap = _recap(second.stdout)
    assert second.returncode == 0 and recap["central"]["changed"] == 0, second.stdout[-3000:]


def test_bad_config_is_refused_before_it_replaces_the_live_one(converged) -> None:
    tmp, root = converged["tmp"], converged["root"]
    live = (root / "etc/edged/edged.toml").read_text()
    result = _run([str(BIN / "ansible-playbook"), "-i", str(converged["inventory"]),
                   "-e", f"@{converged['extra_file']}", "-e", '{"edged_config": {"store": {"max_bytes": 5}}}',
                   "--tags", "edged_config", "site.yml"], tmp)
    assert result.returncode != 0
    assert "max_bytes" in result.stdout, result.stdout[-3000:]
    assert (root / "etc/edged/edged.toml").read_text() == live


@pytest.fixture(scope="module")
def running(converged):
    """The installed edged, run from the installed venv with the rendered config, as the unit would."""
    root, port = converged["root"], converged["port"]
    state = root / "var/lib/edged"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGED_")}
    env["STATE_DIRECTORY"] = str(state)
    log = (converged["tmp"] / "edged.log").open("w")
    cmd = [str(root / "opt/edged/venv/bin/edged"), "run", "--config", str(root / "etc/edged/edged.toml")]
    proc = subprocess.Popen(cmd, cwd=state, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield {**converged, "proc": proc, "log": converged["tmp"] / "edged.log"}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_installed_edged_answers_healthz(running) -> None:
    url = f"http://127.0.0.1:{running['port']}/healthz"
    deadline = time.monotonic() + 120
    status, body = 0, {}
    while time.monotonic() < deadline:
        assert running["proc"].poll() is None, running["log"].read_text()[-3000:]
        try:
            status, body = _get(url)
            if status == 200:
                break
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.5)
    assert status == 200 and body.get("status") == "ok", (status, body, running["log"].read_text()[-3000:])
    # The CLI of the installed venv reads the same store through the rendered config.
    root = running["root"]
    cli = subprocess.run([str(root / "opt/edged/venv/bin/edged"), "status", "--json", "--config",
                          str(root / "etc/edged/edged.toml")], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["db"]["path"] == f"{root}/var/lib/edged/edged.db"


def test_health_gate_passes_against_the_running_box(running) -> None:
    test_installed_edged_answers_healthz(running)
    result = _run([str(BIN / "ansible-playbook"), "-i", str(running["inventory"]), "-e", f"@{running['extra_file']}",
                   "-e", '{"edged_health_check": true}', "--tags", "edged_health", "site.yml"], running["tmp"])
    assert result.returncode == 0, result.stdout[-4000:]
    assert _recap(result.stdout)["box"]["failed"] == 0


def test_rollout_stops_at_the_first_unhealthy_box(running) -> None:
    """Two boxes, one per batch: the first one's health gate fails, the second one is never touched."""
    tmp = running["tmp"]
    inventory = tmp / "two-boxes.ini"
    closed = free_port()
    inventory.write_text(
        "[edged]\n"
        f"box1 ansible_connection=local ansible_python_interpreter={sys.executable} ansible_become=false"
        f" edged_health_base_url=http://127.0.0.1:{closed}\n"
        f"box2 ansible_connection=local ansible_python_interpreter={sys.executable} ansible_become=false\n"
    )
    result = _run([str(BIN / "ansible-playbook"), "-i", str(inventory), "-e", f"@{running['extra_file']}",
                   "-e", '{"edged_health_check": true, "edged_health_retries": 1, "edged_health_delay": 1,'
                         ' "edged_serial": 1}',
                   "--tags", "edged_health", "site.yml"], tmp)
    assert result.returncode != 0, result.stdout[-4000:]
    recap = _recap(result.stdout)
    assert recap["box1"]["failed"] == 1, result.stdout[-4000:]
    assert "box2" not in recap or recap["box2"]["ok"] == 0, result.stdout[-4000:]
    assert "not healthy" in result.stdout


def test_upgrade_then_rollback_switches_releases(converged, wheelhouse: Path, tmp_path: Path) -> None:
    """A new version gets its own release and the link; -e edged_version=<old> switches back without a
    reinstall; releases beyond edged_keep_releases go, never the one in use."""
    root, new = converged["root"], f"{VERSION}.post1"
    # The same code under a new version number, in a wheelhouse of its own.
    src = tmp_path / "src"
    shutil.copytree(REPO / "edged", src / "edged", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    init = src / "edged" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{VERSION}"', f'"{new}"'))
    _pip_wheel(src, tmp_path)
    house = tmp_path / "wheelhouse"
    shutil.copytree(wheelhouse, house, ignore=shutil.ignore_patterns("edged-*.whl"))
    shutil.copy(tmp_path / f"edged-{new}-py3-none-any.whl", house)
    subprocess.run(["tar", "-C", str(house), "-cf", f"{house}.tar", "."], check=True)
    # An old release nobody uses any more: removed with edged_keep_releases 0.
    releases = root / "opt/edged/releases"
    (releases / "0.0.1").mkdir()
    (releases / "0.0.1" / ".installed").write_text("0.0.1\n")
    os.utime(releases / "0.0.1", (1, 1))

    base = [str(BIN / "ansible-playbook"), "-i", str(converged["inventory"]), "-e", f"@{converged['extra_file']}"]
    upgrade = _run([*base, "-e", json.dumps({"edged_version": new, "edged_wheelhouse_dir": str(house),
                                             "edged_keep_releases": 0}), "site.yml"], tmp_path)
    assert upgrade.returncode == 0, upgrade.stdout[-4000:]
    link = root / "opt/edged/venv"
    assert link.resolve() == (releases / new / "venv").resolve()
    assert _installed_version(link) == f"edged {new}"
    assert sorted(p.name for p in releases.iterdir()) == sorted([VERSION, new])  # 0.0.1 gone, the running one kept

    pin_old = json.dumps({"edged_version": VERSION, "edged_keep_releases": 0})
    rollback = _run([*base, "-e", pin_old, "site.yml"], tmp_path)
    assert rollback.returncode == 0, rollback.stdout[-4000:]
    assert link.resolve() == (releases / VERSION / "venv").resolve()
    install = re.search(r"TASK \[edged : Install edged and its dependencies[^\n]*\n(\w+)", rollback.stdout)
    assert install and install.group(1) == "skipping", rollback.stdout[-4000:]  # the kept release, not rebuilt
    assert sorted(p.name for p in releases.iterdir()) == sorted([VERSION, new])  # the one that ran before stays
