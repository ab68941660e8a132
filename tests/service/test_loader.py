"""netbus/service/loader.py: what an import path may name, and the errors when it is wrong."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netbus.errors import ConfigError
from netbus.service.loader import build_services, import_target, load_services
from tests.service import targets

T = "tests.service.targets"


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for throwaway modules (removed from sys.modules after)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("scratch_"):
            del sys.modules[name]


def test_an_instance_is_served_as_it_is() -> None:
    assert load_services(f"{T}:ECHO") == [targets.ECHO]


def test_a_class_is_built_with_the_settings_as_keyword_arguments() -> None:
    (echo,) = load_services(f"{T}:Echo", settings={"prefix": "p"})
    assert isinstance(echo, targets.Echo) and echo.prefix == "p"


def test_a_factory_is_called_with_the_settings() -> None:
    (echo,) = load_services(f"{T}:make", settings={"prefix": "q"})
    assert isinstance(echo, targets.Echo) and echo.prefix == "q"
    assert [type(s) for s in load_services(f"{T}:make_two")] == [targets.Echo, targets.Chat]


def test_a_list_mixes_classes_and_instances() -> None:
    echo, chat = load_services(f"{T}:BOTH")
    assert isinstance(echo, targets.Echo) and chat is targets.BOTH[1]


def test_a_dotted_attribute_is_followed() -> None:
    assert import_target(f"{T}:Echo.echo") is targets.Echo.echo


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.service.targets", "not an import path of the form package.module:attr"),
        ("no_such_pkg.mod:X", "no module named 'no_such_pkg'"),
        ("tests.service.no_such_mod:X", "no module named 'tests.service.no_such_mod'"),
        (f"{T}:Missing", "has no attribute 'Missing'"),
        (f"{T}:NOT_A_SERVICE", "is a value of type int (42); expected a Service instance"),
        (f"{T}:NotAService", "the class NotAService, not a Service subclass"),
        (f"{T}:make_nothing", "returned nothing"),
        (f"{T}:make_wrong", "returned a value of type str"),
    ],
)
def test_a_bad_target_is_a_clear_error(target: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_services(target)
    assert message in str(caught.value)


def test_settings_that_do_not_fit_name_the_key() -> None:
    with pytest.raises(ConfigError, match="prefx") as caught:
        load_services(f"{T}:Echo", settings={"prefx": "p"})
    assert "got an unexpected keyword argument 'prefx' (it takes: prefix)" in str(caught.value)
    with pytest.raises(ConfigError, match="a Service instance, which takes no settings"):
        load_services(f"{T}:ECHO", settings={"prefix": "p"})


def test_a_module_that_fails_to_import_says_why(scratch: Path) -> None:
    (scratch / "scratch_broken.py").write_text("import scratch_missing_dependency\n")
    (scratch / "scratch_raises.py").write_text("raise RuntimeError('boom at import')\n")
    (scratch / "scratch_syntax.py").write_text("def f(:\n")
    with pytest.raises(ConfigError, match="importing scratch_broken failed: No module named"):
        load_services("scratch_broken:X")
    with pytest.raises(ConfigError, match="RuntimeError: boom at import"):
        load_services("scratch_raises:X")
    with pytest.raises(ConfigError, match="SyntaxError"):
        load_services("scratch_syntax:X")


def test_build_services_names_the_origin() -> None:
    with pytest.raises(ConfigError, match=r"services\.echo is an empty list"):
        build_services([], origin="services.echo")
