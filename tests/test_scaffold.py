"""``netbus new`` (netbus/scaffold.py): the generated project, checked in-process.

The project's own tests run here, in this event loop, on its `TestCluster`; installing it
into a virtualenv and running it under ``netbus up`` is tests/service/test_serve_process.py.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from netbus.cli import main
from netbus.config import load_settings
from netbus.scaffold import new_project, project_name, render
from netbus.serve import serve_target

NAME = "nbgame_scaffold"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A generated project whose package is importable (and forgotten afterwards)."""
    path = new_project(NAME, tmp_path)
    monkeypatch.syspath_prepend(str(path))
    yield path
    for module in [m for m in sys.modules if m == NAME or m.startswith(NAME + ".")]:
        del sys.modules[module]


def test_the_project_has_its_files_filled_in(project: Path) -> None:
    files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert files == [
        ".gitignore",
        "README.md",
        f"{NAME}/__init__.py",
        f"{NAME}/service.py",
        "netbus.toml",
        "pyproject.toml",
        "tests/test_service.py",
    ]
    for path in project.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(), path
    for path in project.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    assert meta["project"]["name"] == NAME
    assert meta["project"]["dependencies"] == ["netbus>=0.1.0"]


def test_its_netbus_toml_declares_the_service(project: Path) -> None:
    settings = load_settings(project / "netbus.toml")
    route = settings.gateway.services[NAME]
    assert (route.stype, route.addresses, route.public) == (16, ["127.0.0.1:6090"], False)
    spec = serve_target(settings, service=NAME)
    (game,) = spec.services
    assert game.greeting == "Hello"  # from [services.<name>.settings]
    assert (spec.role, spec.port, spec.admin_address) == (NAME, 6090, ("127.0.0.1", 9090))


async def test_its_own_tests_pass(project: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        f"{NAME}_tests", project / "tests" / "test_service.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = [f for name, f in vars(module).items() if name.startswith("test_")]
    assert len(tests) == 3
    for test in tests:
        assert inspect.iscoroutinefunction(test)
        await test()


def test_its_readme_has_two_commands_and_a_client(project: Path) -> None:
    readme = (project / "README.md").read_text()
    (commands,) = re.findall(r"```bash\n(.*?)```", readme, re.S)
    lines = [line.split("#")[0].strip() for line in commands.splitlines()]
    assert lines == [
        "python -m pip install -e '.[test]' && python -m netbus up",
        "python -m pytest",
    ]
    (client,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    compile(client, "README.md", "exec")  # run against `netbus up` by the process test


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("1game", "starting with a letter"),
        ("my game", "letters, digits"),
        ("x" * 33, "1-32"),
        ("class", "is taken"),
        ("tests", "is taken"),
        ("netbus", "is taken"),
        ("web", "is taken"),
        ("json", "already exists here"),
        ("pytest", "already exists here"),
    ],
)
def test_bad_names_are_refused(name: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        project_name(name)


def test_a_dashed_name_makes_an_underscored_package() -> None:
    names = project_name("Space-Race")
    assert (names.project, names.package) == ("Space-Race", "space_race")


def test_nothing_existing_is_overwritten(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError):
        new_project("taken", tmp_path)
    assert list((tmp_path / "taken").iterdir()) == []


def test_a_failure_half_way_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(text: str, values: dict[str, str]) -> str:
        raise OSError("disk full")

    monkeypatch.setattr("netbus.scaffold.render", broken)
    with pytest.raises(OSError, match="disk full"):
        new_project("halfway", tmp_path)
    assert not (tmp_path / "halfway").exists()


def test_render_refuses_an_unknown_placeholder() -> None:
    assert render("a {{ x }} b", {"x": "1"}) == "a 1 b"
    with pytest.raises(KeyError):
        render("{{y}}", {})


def test_netbus_new_command(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["new", "nbgame_cli", "-C", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "nbgame_cli" / "netbus.toml").is_file()
    assert "python -m pytest" in result.output
    again = runner.invoke(main, ["new", "nbgame_cli", "-C", str(tmp_path)])
    assert again.exit_code == 1
    assert "already exists; nothing was written" in again.output
    bad = runner.invoke(main, ["new", "9lives", "-C", str(tmp_path)])
    assert bad.exit_code == 1 and "starting with a letter" in bad.output
