"""netbus' build backend: setuptools, plus the in-repo load tool in the ``bench``/``test`` extras.

The load tool is its own distribution, ``netbus-bench``, in ``bench/`` of this repository, and
is not on any package index. pip cannot say "the distribution in ./bench of this checkout" in
an extra: a relative ``file:`` URL is resolved against the current directory, not the project.
So when ``bench/pyproject.toml`` sits next to the project being built (a checkout, not an
sdist), this backend adds ``Requires-Dist: netbus-bench @ file:///<checkout>/bench`` for the
``bench`` and ``test`` extras to the metadata setuptools wrote, and ``pip install -e '.[test]'``
installs the tool from wherever the checkout is. Nothing else changes: every hook is
setuptools' own, and an sdist (no ``bench/``) builds exactly what setuptools builds.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
)

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

#: the extras that install the load tool
EXTRAS = ("bench", "test")


def _bench_lines() -> list[str]:
    bench = Path.cwd().resolve() / "bench"  # build frontends run hooks in the project root
    if not (bench / "pyproject.toml").is_file():
        return []
    return [f'Requires-Dist: netbus-bench @ {bench.as_uri()} ; extra == "{e}"' for e in EXTRAS]


def _patched(metadata: str) -> str:
    """The metadata text with the bench requirements after the other headers."""
    lines = _bench_lines()
    if not lines or "Requires-Dist: netbus-bench" in metadata:
        return metadata
    head, sep, body = metadata.partition("\n\n")  # headers, then the long description
    return head + "\n" + "\n".join(lines) + sep + body


def _patch_dist_info(directory: str, name: str) -> str:
    path = Path(directory, name, "METADATA")
    path.write_text(_patched(path.read_text(encoding="utf-8")), encoding="utf-8")
    return name


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()},{len(data)}"


def _patch_wheel(directory: str, name: str) -> str:
    """Rewrite the wheel with the patched METADATA and its RECORD line to match."""
    path = Path(directory, name)
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        infos = src.infolist()
        meta = next(i.filename for i in infos if i.filename.endswith(".dist-info/METADATA"))
        record = meta.rsplit("/", 1)[0] + "/RECORD"
        new_meta = _patched(src.read(meta).decode("utf-8")).encode("utf-8")
        for info in infos:
            data = src.read(info)
            if info.filename == meta:
                data = new_meta
            elif info.filename == record:
                rows = data.decode("utf-8").splitlines()
                rows = [
                    f"{meta},{_record_hash(new_meta)}" if r.startswith(meta + ",") else r
                    for r in rows
                ]
                data = ("\n".join(rows) + "\n").encode("utf-8")
            dst.writestr(info, data)
    os.replace(tmp, path)
    return name


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: dict[str, Any] | None = None
) -> str:
    return _patch_dist_info(
        metadata_directory,
        _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings),
    )


def prepare_metadata_for_build_editable(
    metadata_directory: str, config_settings: dict[str, Any] | None = None
) -> str:
    return _patch_dist_info(
        metadata_directory,
        _setuptools.prepare_metadata_for_build_editable(metadata_directory, config_settings),
    )


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    name = _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    return _patch_wheel(wheel_directory, name)


def build_editable(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    name = _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
    return _patch_wheel(wheel_directory, name)
