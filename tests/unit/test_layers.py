"""The package's layers, read from its imports: cli -> engines -> flows -> workspace -> adapters -> core / agent.

Every import counts, including those inside functions (a lazy import hides a dependency, it does
not remove it). A module may import its own layer and the layers below it, never one above; the
agent, which runs on the hosts with the standard library only, imports nothing of golive but
itself; no two modules import each other, however indirectly. The tools beside the product
(golive.bench, golive.testing) may use it; the product never imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "deploy" / "golive"
# Lowest first; a module belongs to the first entry its dotted name starts with.
LAYERS = (
    ("core", ("golive.core",)),
    ("agent", ("golive.agent",)),
    ("adapters", ("golive.adapters",)),
    ("workspace", ("golive.workspace",)),
    ("flows", ("golive.flows",)),
    ("engines", ("golive.engines",)),
    ("cli", ("golive.cli", "golive.__main__", "golive")),
)
TOOLS = ("golive.bench", "golive.testing")
RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}
MAX_TOP_LEVEL_MODULES = 7


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str | None:
    if any(module == t or module.startswith(t + ".") for t in TOOLS):
        return None
    for name, prefixes in LAYERS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return name
    return None


def golive_imports(path: Path) -> set[str]:
    """Every golive module `path` imports, anywhere in the file; `from golive.x import y` counts as
    golive.x.y when that is a module, else golive.x."""
    found: set[str] = set()
    package = module_name(path)
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "golive")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != "golive":
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if modules().get(candidate) else base)
    return found


_MODULES: dict[str, Path] = {}


def modules() -> dict[str, Path]:
    if not _MODULES:
        for path in sorted(PACKAGE.rglob("*.py")):
            _MODULES[module_name(path)] = path
    return _MODULES


def graph() -> dict[str, set[str]]:
    return {name: {m for m in golive_imports(path) if m in modules() and m != name}
            for name, path in modules().items()}


def test_no_import_goes_up_a_layer():
    upward = []
    for module, imported in sorted(graph().items()):
        mine = layer(module)
        for target in sorted(imported):
            theirs = layer(target)
            if mine is None:
                continue  # a tool may use any part of the product
            if theirs is None:
                upward.append(f"{module} -> {target} (a tool)")
            elif mine == "agent" and theirs != "agent":
                upward.append(f"{module} -> {target} (the agent runs on hosts with the standard library only)")
            elif RANK[theirs] > RANK[mine]:
                upward.append(f"{module} ({mine}) -> {target} ({theirs})")
    assert upward == []


def test_no_circular_import():
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_few_modules_at_the_top_of_the_package():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_the_checks_would_catch_an_upward_import_and_a_circle(tmp_path, monkeypatch):
    # The same analysis on a made-up package: an adapter importing a flow, and two flows importing each other.
    fake = tmp_path / "golive"
    for name, text in {"adapters/x.py": "from golive.flows import a\n",
                       "flows/a.py": "def f():\n    from golive.flows import b\n",
                       "flows/b.py": "from golive.flows.a import f\n",
                       "adapters/__init__.py": "", "flows/__init__.py": "", "__init__.py": ""}.items():
        (fake / name).parent.mkdir(parents=True, exist_ok=True)
        (fake / name).write_text(text)
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", fake)
    _MODULES.clear()
    try:
        edges = graph()
        assert "golive.flows.a" in edges["golive.adapters.x"]
        assert layer("golive.adapters.x") == "adapters" and layer("golive.flows.a") == "flows"
        assert "golive.flows.b" in edges["golive.flows.a"] and "golive.flows.a" in edges["golive.flows.b"]
        try:
            test_no_circular_import()
        except AssertionError:
            pass
        else:
            raise AssertionError("the circle flows.a <-> flows.b was not found")
    finally:
        _MODULES.clear()
