"""YAML for golive's own files: duplicate keys refused, every key's line remembered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from golive.core.errors import BadInput, Problem


class YamlMap(dict):
    """A mapping that remembers the line (1-based) of each of its keys."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lines: dict[str, int] = {}
        self.line = 0

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.line)


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> YamlMap:
    loader.flatten_mapping(node)
    result = YamlMap()
    result.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {result.lines[key]})", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_node.start_mark.line + 1
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def yaml_problem(path: str, error: yaml.YAMLError) -> Problem:
    mark = getattr(error, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
    problem = getattr(error, "problem", None) or str(error)
    if "'\\t'" in problem:
        problem = "a tab character is not allowed for indentation in YAML; use spaces"
    context = getattr(error, "context", None)
    return Problem(where, f"malformed YAML: {problem}" + (f" ({context})" if context else ""))


def load_yaml(path: Path, display: str | None = None) -> Any:
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"file not found: {shown}") from None
    except UnicodeDecodeError:
        raise BadInput(f"{shown}: not UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as error:
        raise BadInput(yaml_problem(shown, error)) from None
