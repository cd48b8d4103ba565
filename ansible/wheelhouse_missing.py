"""Print the requirements a wheelhouse lacks for a target box, one per line (nothing when it is complete).

    python ansible/wheelhouse_missing.py DIR PYTHON_VERSION ARCH

pip evaluates environment markers (``tomli; python_version < "3.11"``) with the interpreter that runs it,
even under ``pip download --python-version``, so a wheelhouse for a Python 3.10 box prepared with Python
3.11 misses such dependencies. This reads every wheel's metadata, evaluates the markers for the target
(Linux, the given architecture and Python version) and lists each requirement no wheel in DIR provides;
wheelhouse.sh downloads those and asks again until nothing is missing.
"""

from __future__ import annotations

import sys
import zipfile
from email.parser import Parser
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename
except ImportError:  # a bare controller Python: pip vendors packaging
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename


def _metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return Parser().parsestr(zf.read(name).decode("utf-8"))


def missing(wheelhouse: Path, python_version: str, arch: str) -> list[str]:
    env = {
        "python_version": python_version, "python_full_version": f"{python_version}.0",
        "platform_machine": arch, "platform_system": "Linux", "sys_platform": "linux", "os_name": "posix",
        "implementation_name": "cpython", "platform_python_implementation": "CPython",
    }
    wheels = {canonicalize_name(parse_wheel_filename(w.name)[0]): w for w in wheelhouse.glob("*.whl")}
    wanted: list[str] = []
    seen: set[tuple[str, str]] = set()
    # Start from edged; follow requirements (with the extras asked for) through the wheels present.
    todo: list[tuple[str, str]] = [("edged", "")]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        wheel = wheels.get(name)
        if wheel is None:
            continue
        for line in _metadata(wheel).get_all("Requires-Dist") or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
                continue
            dep = canonicalize_name(req.name)
            if dep not in wheels:
                wanted.append(str(Requirement(f"{req.name}{req.specifier}")))
            todo.extend((dep, e) for e in (req.extras or {""}))
            todo.append((dep, ""))
    return sorted(set(wanted))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    for requirement in missing(Path(sys.argv[1]), sys.argv[2], sys.argv[3]):
        print(requirement)
