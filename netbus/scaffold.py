"""``netbus new NAME``: a runnable game project, from templates shipped inside netbus.

The project (docs/services.md §10) is a service with one JSON and one BUF command, its
``[services.<name>]`` table in ``netbus.toml`` (so ``netbus up`` runs it and the gateway
routes to it), a pytest test on `netbus.testing.TestCluster`, a ``pyproject.toml`` that
depends on netbus, and a README whose two commands install and run it, and test it.

The templates are package data (``netbus/templates/project``): no network, no template
engine. A template is its file's text with ``{{project}}``, ``{{package}}`` and
``{{netbus_version}}`` replaced; ``package/`` becomes the Python package's directory,
``.tmpl`` is dropped and ``gitignore`` becomes ``.gitignore``.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

from netbus.config import RESERVED_SERVICE_NAMES

__all__ = ["ProjectName", "new_project", "project_name", "render"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
#: names a project cannot take even though nothing is installed under them
_TAKEN = frozenset({"netbus", "netbus_bench", "test", "tests"})
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


@dataclass(frozen=True)
class ProjectName:
    """The names of a new project: its distribution (and directory) and its package."""

    project: str  #: as given: the directory and the ``pyproject.toml`` name
    package: str  #: the Python package, also the service's name in ``netbus.toml``


def project_name(name: str) -> ProjectName:
    """Check ``name`` and derive the package name (lower case, ``-`` -> ``_``).

    Raises:
        ValueError: ``name`` is malformed, a Python keyword, a built-in role's name, or the
            name of a module this environment already has (which the package would shadow).
    """
    if not _NAME.match(name):
        raise ValueError(
            f"{name!r}: a project name is 1-32 letters, digits, _ and -, starting with a letter"
        )
    package = name.lower().replace("-", "_")
    if keyword.iskeyword(package) or package in _TAKEN or package in RESERVED_SERVICE_NAMES:
        raise ValueError(f"{name!r}: {package!r} is taken (a keyword or a netbus name)")
    if package in sys.stdlib_module_names or importlib.util.find_spec(package) is not None:
        raise ValueError(
            f"{name!r}: a module named {package!r} already exists here; the project's "
            "package would shadow it (pick another name)"
        )
    return ProjectName(project=name, package=package)


def _templates() -> Traversable:
    return resources.files("netbus") / "templates" / "project"


def _walk(node: Traversable, prefix: PurePosixPath) -> list[tuple[PurePosixPath, str]]:
    out = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            out.extend(_walk(child, prefix / child.name))
        elif child.name.endswith(".tmpl"):
            out.append((prefix / child.name, child.read_text(encoding="utf-8")))
    return out


def render(text: str, values: dict[str, str]) -> str:
    """``text`` with each ``{{key}}`` replaced.

    Raises:
        KeyError: a placeholder has no value (a bug in a template).
    """
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def new_project(name: str, parent: Path) -> Path:
    """Create the project ``name`` in ``parent / name`` and return that directory.

    Raises:
        ValueError: ``name`` is refused (`project_name`).
        FileExistsError: ``parent / name`` exists (nothing is overwritten, even if empty).
        OSError: the files cannot be written (the half-made directory is removed).
    """
    from netbus import __version__

    names = project_name(name)
    values = {
        "project": names.project,
        "package": names.package,
        "netbus_version": __version__,
    }
    target = parent / names.project
    target.mkdir()  # FileExistsError: never write into something that is there
    try:
        for rel, text in _walk(_templates(), PurePosixPath()):
            parts = [names.package if part == "package" else part for part in rel.parts]
            parts[-1] = parts[-1].removesuffix(".tmpl")
            if parts[-1] == "gitignore":
                parts[-1] = ".gitignore"
            path = target.joinpath(*parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(text, values), encoding="utf-8")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target
