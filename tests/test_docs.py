"""Docs that must follow the code: every configuration key is in docs/config.md."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from netbus import config

DOC = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()


def _keys(model: type[BaseModel]) -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        out.append(field.alias or name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.extend(_keys(annotation))
    return out


MODELS = [
    config.Settings,
    config.ListenerConfig,
    config.ServiceRoute,
    config.LimitsConfig,
    config.ServiceConfig,
]


@pytest.mark.parametrize("key", sorted({k for m in MODELS for k in _keys(m)}))
def test_config_key_is_documented(key: str) -> None:
    forms = (f"`{key}`", f"`[{key}]`", f"`limits.{key}`")
    assert any(form in DOC for form in forms), f"docs/config.md does not mention {key!r}"
