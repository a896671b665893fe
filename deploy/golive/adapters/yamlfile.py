"""YAML for golive's own files: duplicate keys refused, every key's line remembered; and the bounds
every YAML file golive or ansible-core reads must keep (size, nesting, expanded size), checked on
the composed node graph before anything is constructed, so an alias bomb ("billion laughs") is
refused in milliseconds instead of expanding until memory runs out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from golive.core.errors import BadInput, Problem

MAX_FILE_BYTES = 16 << 20  # a YAML file golive or ansible-core reads
MAX_DEPTH = 100  # mappings and sequences inside each other
MAX_EXPANDED_NODES = 1_000_000  # nodes once every alias is expanded (what a copy or a walk visits)


class YamlTooLarge(Exception):
    """The document is over a bound; the message says which."""


def check_bounds(node: Any) -> None:
    """Raise YamlTooLarge when the composed document nests deeper than MAX_DEPTH or, with its aliases
    expanded, has more than MAX_EXPANDED_NODES nodes. Each distinct node is visited once (aliases
    are the same node object), so the check costs as much as the file, however big the expansion."""
    if node is None:
        return
    expanded: dict[int, int] = {}
    stack: list[tuple[Any, int, bool]] = [(node, 1, False)]
    on_path: set[int] = set()
    while stack:
        current, depth, done = stack.pop()
        key = id(current)
        if done:
            on_path.discard(key)
            children = _children(current)
            expanded[key] = 1 + sum(expanded[id(child)] for child in children)
            if expanded[key] > MAX_EXPANDED_NODES:
                line = current.start_mark.line + 1
                raise YamlTooLarge(f"line {line}: with its aliases expanded the document has more than "
                                   f"{MAX_EXPANDED_NODES:,} values (an alias bomb?)")
            continue
        if key in expanded:
            continue
        if depth > MAX_DEPTH:
            raise YamlTooLarge(f"line {current.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
        if key in on_path:  # a recursive alias: PyYAML can compose one, nothing can expand it
            raise YamlTooLarge(f"line {current.start_mark.line + 1}: an alias refers to itself")
        on_path.add(key)
        stack.append((current, depth, True))
        for child in _children(current):
            if id(child) not in expanded:
                stack.append((child, depth + 1, False))


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def scan_bounds(text: str) -> None:
    """Compose `text` (no construction, tags unresolved: `!vault` is fine) and check its bounds.
    Raises YamlTooLarge, or yaml.YAMLError for text that is not YAML."""
    if len(text) > MAX_FILE_BYTES:
        raise YamlTooLarge(f"{len(text):,} bytes, over the limit of {MAX_FILE_BYTES >> 20} MB")
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_class(text)
    try:
        while loader.check_node():
            check_bounds(loader.get_node())
    except RecursionError:
        raise YamlTooLarge(f"nested more than {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()


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
    if len(text) > MAX_FILE_BYTES:
        raise BadInput(Problem(shown, f"{len(text):,} bytes, over the limit of {MAX_FILE_BYTES >> 20} MB for a "
                                      f"YAML file"))
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        check_bounds(node)
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as error:
        raise BadInput(yaml_problem(shown, error)) from None
    except YamlTooLarge as error:
        raise BadInput(Problem(shown, f"refused: {error}")) from None
    except RecursionError:
        raise BadInput(Problem(shown, f"refused: nested more than {MAX_DEPTH} levels deep")) from None
    finally:
        loader.dispose()
