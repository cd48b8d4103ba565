"""Configuration: the documented example, error messages, environment overrides, secrets, defaults.

Promise 6 of the design: config errors are caught at start, with a message that names the key and
the file (or the environment variable) it came from.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import pytest
import tomli_w
from pydantic import BaseModel

from edged.config import ConfigError, Settings, effective_config, load_config
from edged.config import load as config_load

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "edged.example.toml"

SECTION_LINE = re.compile(r"^\[(\w+)\]")
SUBTABLE_LINE = re.compile(r"^\[(\w+)\.(\w+)\]")
KEY_LINE = re.compile(r"^(\w+)\s*=")
COMMENTED_KEY_LINE = re.compile(r"^#\s*(\w+)\s*=")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The developer's or CI's own EDGED_* and systemd variables must not change what is loaded,
    and relative defaults (./edged.toml, ./var) must resolve inside the test's directory."""
    for name in list(os.environ):
        if name.upper().startswith("EDGED_") or name in ("STATE_DIRECTORY", "CREDENTIALS_DIRECTORY"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write_config(tmp_path: Path, text: str, name: str = "edged.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(path: Path | None = None) -> str:
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    return str(excinfo.value)


# -- the example file documents exactly the settings model ---------------------------------------


def section_models(annotation: Any) -> list[type[BaseModel]]:
    """The models a section can be: one, or every member of a union such as [backend]'s."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) is Annotated:
        return section_models(get_args(annotation)[0])
    return [model for arg in get_args(annotation) for model in section_models(arg)]


def example_lines() -> list[tuple[str, str | None, str, str]]:
    """(section, subtable or None, key, line) for every ``key = value`` or ``# key = value`` line.

    A dict-valued setting is documented as its own table, ``[section.key]``, whose lines are its
    entries; the table header documents ``(section, key)``."""
    found = []
    section = sub = None
    for line in EXAMPLE.read_text().splitlines():
        if match := SUBTABLE_LINE.match(line):
            section, sub = match.groups()
            found.append((section, None, sub, line))
        elif match := SECTION_LINE.match(line):
            section, sub = match.group(1), None
        elif section and (match := KEY_LINE.match(line) or COMMENTED_KEY_LINE.match(line)):
            found.append((section, sub, match.group(1), line))
    return found


def example_keys() -> dict[tuple[str, str], list[str]]:
    """(section, key) -> the lines documenting it; a commented-out ``# key = value`` counts."""
    documented: dict[tuple[str, str], list[str]] = {}
    for section, sub, key, line in example_lines():
        if sub is None:
            documented.setdefault((section, key), []).append(line)
    return documented


def model_keys() -> set[tuple[str, str]]:
    # [backend] is a union on `type`: the example documents the keys of every backend.
    return {
        (section, key)
        for section, field in Settings.model_fields.items()
        for model in section_models(field.annotation)
        for key in model.model_fields
    }


def test_example_documents_every_key_and_nothing_else():
    documented = set(example_keys())
    expected = model_keys()
    missing = sorted(expected - documented)
    extra = sorted(documented - expected)
    assert not missing and not extra, (
        f"{EXAMPLE} is out of step with edged/config/settings.py\n"
        f"  keys in the model but not documented: {', '.join(f'[{s}] {k}' for s, k in missing) or 'none'}\n"
        f"  keys documented but not in the model: {', '.join(f'[{s}] {k}' for s, k in extra) or 'none'}"
    )


def test_example_documents_dict_settings_as_tables():
    tables = {(section, key) for section, sub, key, line in example_lines() if line.startswith("[")}
    for section, field in Settings.model_fields.items():
        for model in section_models(field.annotation):
            for key, info in model.model_fields.items():
                if get_origin(info.annotation) is dict:
                    assert (section, key) in tables, f"[{section}] {key} should be documented as [{section}.{key}]"


def test_example_documents_every_backend_under_its_type():
    declared = [
        tomllib.loads(line.lstrip("#").strip())["type"]
        for section, sub, key, line in example_lines()
        if section == "backend" and key == "type"
    ]
    backends = section_models(Settings.model_fields["backend"].annotation)
    backend_types = {m.model_fields["type"].default for m in backends}
    assert sorted(declared) == sorted(backend_types)


def test_example_loads_and_its_values_are_the_defaults():
    loaded = load_config(EXAMPLE)
    defaults = Settings()
    # An operator reads the uncommented values as "what you get if you leave the key out".
    for section, values in tomllib.loads(EXAMPLE.read_text()).items():
        for key, value in values.items():
            default = getattr(getattr(defaults, section), key)
            assert value == (str(default) if isinstance(default, Path) else default), f"[{section}] {key}"
            assert getattr(getattr(loaded.settings, section), key) == default


def commented_examples() -> list[dict[str, Any]]:
    """Settings data sets made of the commented-out examples, each one valid on its own.

    [backend] keys belong to one backend type: a ``# type = "..."`` line starts that backend's
    examples; commented keys before the first one belong to the type set in the file."""
    base: dict[str, Any] = {}
    backends: list[dict[str, Any]] = [{"type": tomllib.loads(EXAMPLE.read_text())["backend"]["type"]}]
    for section, sub, key, line in example_lines():
        if not line.startswith("#"):
            continue
        value = tomllib.loads(line.lstrip("#").strip())
        if section == "backend":
            if key == "type":
                backends.append({})
            backends[-1].update(value)
        elif sub is not None:
            base.setdefault(section, {}).setdefault(sub, dict(getattr(getattr(Settings(), section), sub)))
            base[section][sub].update(value)
        else:
            base.setdefault(section, {}).update(value)
    return [{**base, "backend": backend} for backend in backends]


def test_example_commented_out_values_are_valid():
    # Someone will uncomment them: each example must be a value the model accepts.
    datasets = commented_examples()
    assert datasets[0], "expected commented-out examples in the file"
    for data in datasets:
        Settings(**data)


# -- errors name the key and the file ------------------------------------------------------------


def test_unknown_key_names_key_and_file(tmp_path):
    path = write_config(tmp_path, '[mqtt]\nurll = "mqtt://broker"\n')
    message = load_error(path)
    assert "unknown key [mqtt] urll" in message
    assert str(path) in message


def test_unknown_section_names_section_and_file(tmp_path):
    path = write_config(tmp_path, "[bogus]\nanswer = 42\n")
    message = load_error(path)
    assert "unknown key bogus" in message
    assert str(path) in message


@pytest.mark.parametrize(
    "text, key",
    [
        ("[store]\nbatch_max_rows = 0\n", "[store] batch_max_rows"),
        ('[store]\nqueue_max_rows = "many"\n', "[store] queue_max_rows"),
        ('[logs]\nstart_at = "middle"\n', "[logs] start_at"),
        ('[logs]\nmultiline_start = "(unclosed"\n', "[logs] multiline_start"),
        ("[logs]\npaths = [1]\n", "[logs] paths[0]"),
        ("[mqtt]\nqos = 2\n", "[mqtt] qos"),
        ('[logging]\nlevel = "LOUD"\n', "[logging] level"),
        ('[logs]\ntimezone = "Mars/Olympus_Mons"\n', "[logs] timezone"),
        ("[analysis.patterns]\nerror_code = ['ALM(?P<code>\\d+']\n", "[analysis] patterns"),
    ],
)
def test_bad_value_names_key_and_file(tmp_path, text, key):
    path = write_config(tmp_path, text)
    message = load_error(path)
    assert key in message
    assert str(path) in message


def test_every_error_is_reported_at_once(tmp_path):
    path = write_config(tmp_path, "[store]\nbatch_max_rows = 0\n[mqtt]\nurll = 1\n")
    message = load_error(path)
    assert "[store] batch_max_rows" in message and "unknown key [mqtt] urll" in message


def test_invalid_toml_names_file_and_line(tmp_path):
    path = write_config(tmp_path, '[mqtt]\nurl = "mqtt://unterminated\n')
    message = load_error(path)
    assert str(path) in message
    assert "line 2" in message


def test_missing_explicit_config_file_is_an_error(tmp_path):
    message = load_error(tmp_path / "nope.toml")
    assert str(tmp_path / "nope.toml") in message


# -- environment overrides -----------------------------------------------------------------------


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    path = write_config(
        tmp_path,
        '[store]\npath = "file.db"\n'
        '[logs]\npaths = ["file/*.log"]\n'
        '[mqtt]\nurl = "mqtt://file-broker"\nclient_id = "from-file"\n',
    )
    monkeypatch.setenv("EDGED_STORE__PATH", str(tmp_path / "env.db"))
    monkeypatch.setenv("EDGED_LOGS__PATHS", '["/srv/a/*.log", "/srv/b/**/*.log"]')
    monkeypatch.setenv("EDGED_MQTT__URL", "mqtts://env-broker:8883")
    s = load_config(path).settings
    assert s.store.path == tmp_path / "env.db"
    assert s.logs.paths == ["/srv/a/*.log", "/srv/b/**/*.log"]
    assert s.mqtt.url == "mqtts://env-broker:8883"
    # Overriding one key of a section keeps the file's other keys in that section.
    assert s.mqtt.client_id == "from-file"


def test_environment_works_without_a_file(monkeypatch):
    monkeypatch.setattr(config_load, "DEFAULT_SEARCH", (Path("edged.toml"),))
    monkeypatch.setenv("EDGED_MQTT__URL", "mqtt://env-broker")
    loaded = load_config()
    assert loaded.path is None
    assert loaded.settings.mqtt.url == "mqtt://env-broker"


@pytest.mark.parametrize("name", ["EDGED_MQTT__URLX", "EDGED_BOGUS", "EDGED_BOGUS__KEY"])
def test_unknown_environment_variable_is_an_error_naming_it(tmp_path, monkeypatch, name):
    path = write_config(tmp_path, '[mqtt]\nurl = "mqtt://broker"\n')
    monkeypatch.setenv(name, "1")
    assert name in load_error(path)


def test_bad_environment_value_names_the_variable(tmp_path, monkeypatch):
    path = write_config(tmp_path, "[store]\nbatch_max_rows = 10\n")
    monkeypatch.setenv("EDGED_STORE__BATCH_MAX_ROWS", "lots")
    message = load_error(path)
    assert "EDGED_STORE__BATCH_MAX_ROWS" in message
    assert "[store] batch_max_rows" in message


def test_environment_list_that_is_not_json_names_the_variable(monkeypatch):
    # A plain glob instead of a JSON list is the likeliest mistake with list-valued variables.
    monkeypatch.setenv("EDGED_LOGS__PATHS", "/var/log/cnc/*.log")
    message = load_error()
    assert "EDGED_LOGS__PATHS" in message


# -- secrets -------------------------------------------------------------------------------------


def test_password_file_is_read_without_trailing_newline(tmp_path):
    secret = tmp_path / "mqtt_password"
    secret.write_text("s3cret pass\n")
    path = write_config(tmp_path, f'[mqtt]\nurl = "mqtt://edged@broker"\npassword_file = "{secret}"\n')
    assert load_config(path).settings.mqtt.password.get_secret_value() == "s3cret pass"


def test_systemd_credential_is_used_when_no_password_is_configured(tmp_path, monkeypatch):
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "mqtt_password").write_text("from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    path = write_config(tmp_path, '[mqtt]\nurl = "mqtt://edged@broker"\n')
    assert load_config(path).settings.mqtt.password.get_secret_value() == "from-credential"


def test_configured_password_file_wins_over_the_credential(tmp_path, monkeypatch):
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "mqtt_password").write_text("from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    secret = tmp_path / "mqtt_password"
    secret.write_text("from-file\n")
    path = write_config(tmp_path, f'[mqtt]\npassword_file = "{secret}"\n')
    assert load_config(path).settings.mqtt.password.get_secret_value() == "from-file"


def test_missing_password_file_names_key_and_file(tmp_path):
    missing = tmp_path / "no-such-password"
    path = write_config(tmp_path, f'[mqtt]\nurl = "mqtt://edged@broker"\npassword_file = "{missing}"\n')
    message = load_error(path)
    assert "[mqtt] password_file" in message
    assert str(path) in message
    assert str(missing) in message


def test_effective_config_redacts_the_password(tmp_path):
    secret = tmp_path / "mqtt_password"
    secret.write_text("hunter2-do-not-print\n")
    path = write_config(tmp_path, f'[mqtt]\nurl = "mqtt://edged@broker"\npassword_file = "{secret}"\n')
    effective = effective_config(load_config(path).settings)
    assert effective["mqtt"]["password"] == "<redacted>"
    assert "hunter2" not in tomli_w.dumps(effective)


# -- MQTT URL ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["mqtt://broker", "mqtt://edged@broker:1883", "mqtts://broker.plant.example:8883", "mqtts://[::1]:8883"]
)
def test_mqtt_url_accepted(tmp_path, url):
    path = write_config(tmp_path, f'[mqtt]\nurl = "{url}"\n')
    assert load_config(path).settings.mqtt.url == url


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://broker", "mqtt://"),
        ("tcp://broker:1883", "mqtt://"),
        ("mqtt://edged:hunter2@broker", "password"),
        ("mqtt://", "host"),
        ("mqtt://broker:99999", "port"),
    ],
)
def test_mqtt_url_rejected(tmp_path, url, reason):
    path = write_config(tmp_path, f'[mqtt]\nurl = "{url}"\n')
    message = load_error(path)
    assert "[mqtt] url" in message and reason in message and str(path) in message
    assert "hunter2" not in message


def test_empty_mqtt_url_means_off(tmp_path):
    path = write_config(tmp_path, '[mqtt]\nurl = ""\n')
    assert load_config(path).settings.mqtt.url is None


# -- where the configuration comes from without --config ----------------------------------------


def test_search_order_is_cwd_then_etc():
    assert config_load.DEFAULT_SEARCH == (Path("edged.toml"), Path("/etc/edged/edged.toml"))


@pytest.fixture
def fake_etc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Stands in for /etc/edged/edged.toml, so a box's real config cannot change the outcome."""
    etc = tmp_path / "etc" / "edged.toml"
    etc.parent.mkdir()
    monkeypatch.setattr(config_load, "DEFAULT_SEARCH", (config_load.DEFAULT_SEARCH[0], etc))
    return etc


def test_edged_toml_in_cwd_is_used(tmp_path, fake_etc):
    fake_etc.write_text('[logging]\nlevel = "ERROR"\n')
    write_config(tmp_path, '[logging]\nlevel = "DEBUG"\n')
    loaded = load_config()
    assert loaded.path is not None and loaded.path.resolve() == (tmp_path / "edged.toml").resolve()
    assert loaded.settings.logging.level == "DEBUG"


def test_etc_config_is_used_when_cwd_has_none(fake_etc):
    fake_etc.write_text('[logging]\nlevel = "ERROR"\n')
    loaded = load_config()
    assert loaded.path == fake_etc
    assert loaded.settings.logging.level == "ERROR"


def test_embedded_defaults_keep_state_under_var(tmp_path, fake_etc):
    loaded = load_config()
    assert loaded.path is None
    s = loaded.settings
    var = tmp_path.resolve() / "var"
    assert s.store.path.resolve() == var / "edged.db"
    assert [Path(p).resolve() for p in s.logs.paths] == [var / "logs" / "*.log"]
    assert s.mqtt.url is None
    assert s.mqtt.password is None


def test_embedded_defaults_use_state_directory_under_systemd(tmp_path, fake_etc, monkeypatch):
    state = tmp_path / "lib" / "edged"
    # systemd lists several directories separated by ':' when the unit names several.
    monkeypatch.setenv("STATE_DIRECTORY", f"{state}:{tmp_path / 'other'}")
    s = load_config().settings
    assert s.store.path == state / "edged.db"
    assert s.logs.paths == [str(state / "logs" / "*.log")]
