"""tools/netbus_build.py: setuptools' metadata plus the in-repo load tool in two extras."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
METADATA = (
    "Metadata-Version: 2.4\nName: netbus\nVersion: 0.1.0\n"
    'Provides-Extra: bench\nRequires-Dist: pytest; extra == "test"\n\n# netbus\n\nreadme\n'
)


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.chdir(ROOT)  # build frontends run the hooks in the project root
    spec = importlib.util.spec_from_file_location("netbus_build", ROOT / "tools/netbus_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_requirement_is_an_absolute_url_of_this_checkout(backend: ModuleType) -> None:
    url = (ROOT / "bench").as_uri()
    patched = backend._patched(METADATA)
    head, _, body = patched.partition("\n\n")
    assert f'Requires-Dist: netbus-bench @ {url} ; extra == "bench"' in head.splitlines()
    assert f'Requires-Dist: netbus-bench @ {url} ; extra == "test"' in head.splitlines()
    assert body == "# netbus\n\nreadme\n"
    assert backend._patched(patched) == patched  # once only


def test_an_sdist_without_bench_is_left_alone(
    backend: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert backend._patched(METADATA) == METADATA


def test_wheel_metadata_and_record_stay_consistent(backend: ModuleType, tmp_path: Path) -> None:
    wheel = tmp_path / "netbus-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("netbus/__init__.py", "")
        zf.writestr("netbus-0.1.0.dist-info/METADATA", METADATA)
        zf.writestr(
            "netbus-0.1.0.dist-info/RECORD",
            "netbus/__init__.py,sha256=x,0\nnetbus-0.1.0.dist-info/METADATA,sha256=y,1\n"
            "netbus-0.1.0.dist-info/RECORD,,\n",
        )
    assert backend._patch_wheel(str(tmp_path), wheel.name) == wheel.name
    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read("netbus-0.1.0.dist-info/METADATA")
        record = zf.read("netbus-0.1.0.dist-info/RECORD").decode().splitlines()
        assert zf.read("netbus/__init__.py") == b""
    assert b"Requires-Dist: netbus-bench @ file://" in meta
    digest = base64.urlsafe_b64encode(hashlib.sha256(meta).digest()).rstrip(b"=").decode()
    assert f"netbus-0.1.0.dist-info/METADATA,sha256={digest},{len(meta)}" in record
    assert "netbus/__init__.py,sha256=x,0" in record
    assert not list(tmp_path.glob("*.tmp"))
