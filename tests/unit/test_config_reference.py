"""docs/configuration.md is generated from the settings models, and stays so."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args

from pydantic import BaseModel

from program.model import PLATFORM_KEYS
from scripts import config_reference


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from _models(arg)


def _fields() -> Iterator[tuple[str, Any]]:
    seen: set[type[BaseModel]] = set()
    pending = [(f"platform:{key}", m) for key, model in PLATFORM_KEYS.items() for m in _models(model)]
    while pending:
        path, model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            yield f"{path}.{name}", info
            pending += [(f"{path}.{name}", nested) for nested in _models(info.annotation)]


def test_the_committed_reference_is_the_generated_one() -> None:
    committed = config_reference.OUTPUT.read_text(encoding="utf-8")
    assert committed == config_reference.render(), "docs/configuration.md is stale: make config-reference"


def test_every_setting_is_described() -> None:
    undocumented = [path for path, info in _fields() if not (info.description or "").strip()]
    assert not undocumented, f"add a docstring under each field: {undocumented}"


def test_the_reference_lists_every_key_with_its_default_and_description() -> None:
    text = config_reference.render()
    for key in PLATFORM_KEYS:
        assert f"## `platform:{key}`" in text
    min_size = "| `platform:cluster.pools[].minSize` | integer (>= 0, <= 150) | **required** | Fewest nodes"
    assert min_size in text
    assert "| `platform:database.haCluster` | boolean | `true` | A standby node" in text
    assert "| production | `platform:database` | `ProductionDatabase` |" in text
    assert "`platform:gitopsRepoCredential`" in text
