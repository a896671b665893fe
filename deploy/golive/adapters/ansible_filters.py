"""Ansible's filters and tests in golive's renderer, taken from ansible-core itself.

A template that renders with Ansible's template module must render here too, to the same bytes:
golive offers the filters and tests ansible-core's template module offers (ansible.plugins.filter
core, mathstuff, urls, urlsplit, encryption; ansible.plugins.test core, files, mathstuff, uri),
also under their `ansible.builtin.` and `ansible.legacy.` names. Importing ansible costs more
than a whole no-change deploy otherwise spends rendering, so nothing here imports it until a
template asks for a name Jinja2 does not have (`PluginMap`).

They are called as the template module calls them, minus its lazy containers and markers (plain
values behave the same in these functions): an undefined top-level argument is handed on instead of
calling the function (so `| default` still applies after), iterators come back as lists, Ansible's
tagged values as plain ones. Where Jinja2 has a filter of the same name (`default`, `map`, `unique`,
...) Jinja2's stays: with StrictUndefined it gives the same result; only Jinja2's `random` is
replaced, by Ansible's seeded one.

golive renders the same bytes from the same inputs, so names whose result depends on the clock,
chance or the controller's files and environment are refused with the reason (`refusals` finds
them in a template before it runs; the functions refuse too, for names chosen at run time).
"""

from __future__ import annotations

import collections.abc as c
import functools
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.defaults import DEFAULT_FILTERS, DEFAULT_TESTS

FQCN_PREFIXES = ("ansible.builtin.", "ansible.legacy.")
_FILTER_MODULES = ("core", "mathstuff", "urls", "urlsplit", "encryption")
_TEST_MODULES = ("core", "files", "mathstuff", "uri")
JINJA_REPLACED = frozenset({"random"})  # Jinja2's own would win otherwise, and it cannot take a seed

_CONTROLLER_FILES = ("reads the controller's file system, which differs between controllers and engines; "
                     "put what the template needs in an inventory variable")
REFUSED_FILTERS = {
    "fileglob": _CONTROLLER_FILES,
    "realpath": _CONTROLLER_FILES,
    "expanduser": "depends on the controller's user (HOME); write the path out",
    "expandvars": "depends on the controller's environment variables; use an inventory variable",
}
REFUSED_TESTS = {name: _CONTROLLER_FILES for name in (
    "directory", "is_dir", "file", "is_file", "link", "is_link", "exists", "link_exists", "same_file",
    "is_same_file", "mount", "is_mount", "vaulted_file")}
REFUSED_GLOBALS = {
    "now": "now() gives other bytes at every render; golive_release names the release, or put the date in "
           "an inventory variable",
    "lookup": "lookups read the controller (files, environment, commands) or make values up, so the same "
              "inventory could give other bytes; put the value in an inventory variable (a vault value for "
              "a secret)",
    "lipsum": "lipsum() makes up random text at every render",
}
REFUSED_GLOBALS["query"] = REFUSED_GLOBALS["q"] = REFUSED_GLOBALS["lookup"]

# Filters that make values up unless an argument fixes them: filter -> (keyword, position after the
# filtered value, what to do)
NEEDS_ARGUMENT = {
    "random": ("seed", 2, "give it a seed, e.g. random(seed=golive_host)"),
    "shuffle": ("seed", 0, "give it a seed, e.g. shuffle(seed=golive_host)"),
    "password_hash": ("salt", 1, "give it a salt (a vault value), e.g. password_hash('sha512', my_salt)"),
    "vault": ("salt", 1, "give it a salt"),
    "strftime": ("second", 0, "give it the time to format (epoch seconds) instead of now"),
    "relpath": ("start", 0, "give it the start directory instead of the controller's working directory"),
}


class NotReproducible(jinja2.TemplateRuntimeError):
    """A template asks for something that would not give the same bytes from the same inputs."""


class VaultText(str):
    """An inline `!vault` value, decrypted. Ansible keeps its ciphertext with it: `is vault_encrypted`
    is true of it, and to_yaml writes the ciphertext (`!vault |`), which golive does not keep."""

    __slots__ = ()


_WRITES_CIPHERTEXT = frozenset({"to_yaml", "to_nice_yaml"})


def _holds_vault_text(value: Any) -> bool:
    if isinstance(value, VaultText):
        return True
    if isinstance(value, dict):
        return any(_holds_vault_text(k) or _holds_vault_text(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_vault_text(v) for v in value)
    return False


def _no_vault_text(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if name in _WRITES_CIPHERTEXT and any(_holds_vault_text(a) for a in (*args, *kwargs.values())):
        raise jinja2.TemplateRuntimeError(
            f"{name} of an inline vault value: Ansible's template module writes its ciphertext (!vault |), which "
            f"golive does not keep; a new string, such as (value ~ ''), is written as plain text by both")


class Refused(jinja2.TemplateAssertionError):
    """What `refusals` found in a template, each with its line; raised when the template is compiled."""

    def __init__(self, found: list[tuple[int, str]], name: str | None, filename: str | None) -> None:
        super().__init__(found[0][1], found[0][0], name, filename)
        self.found = found


def short_name(name: str) -> str:
    for prefix in FQCN_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _needs(name: str) -> str:
    keyword, _, advice = NEEDS_ARGUMENT[name]
    effect = {"strftime": "prints the time of the render", "relpath": "depends on the working directory"}.get(
        name, "makes a new value up at every render")
    return f"the {name} filter without {keyword}=... {effect}; {advice}"


def shown(name: Any) -> str:
    """A key or attribute name for a message: as written when it is plain text (the Redactor masks a
    secret in it), else only its type: a repr would escape a secret's backslashes and quotes, and the
    Redactor matches only the raw value."""
    if isinstance(name, str) and "\\" not in name and name.isprintable():
        return f"'{name}'"
    if isinstance(name, int | float | type(None)):
        return str(name)
    return f"(a {type(name).__name__} value, not shown)"


def refusals(tree: nodes.Template) -> list[tuple[int, str]]:
    """Each use of a refused filter, test or function in a parsed template, with its line."""
    found, calls, own = [], [], set()  # own: names the template defines (a macro `now` is no clock)
    for node in tree.find_all((nodes.Filter, nodes.Test, nodes.Call, nodes.Macro, nodes.Name)):
        if isinstance(node, nodes.Macro) or (isinstance(node, nodes.Name) and node.ctx != "load"):
            own.add(node.name)
        elif isinstance(node, nodes.Call):
            if isinstance(node.node, nodes.Name) and node.node.name in REFUSED_GLOBALS:
                calls.append(node)
        elif not isinstance(node, nodes.Name):
            found.extend(_refused_use(node))
    found.extend((call.lineno, f"{call.node.name}() is not supported: {REFUSED_GLOBALS[call.node.name]}")
                 for call in calls if call.node.name not in own)
    return sorted(found)


def _refused_use(node: nodes.Filter | nodes.Test) -> list[tuple[int, str]]:
    name = short_name(node.name)
    if isinstance(node, nodes.Test):
        if name in REFUSED_TESTS:
            return [(node.lineno, f"the test {node.name!r} is not supported: it {REFUSED_TESTS[name]}")]
    elif name in REFUSED_FILTERS:
        return [(node.lineno, f"the filter {node.name!r} is not supported: it {REFUSED_FILTERS[name]}")]
    elif name in NEEDS_ARGUMENT:
        keyword, position, _ = NEEDS_ARGUMENT[name]
        given = (len(node.args) > position or any(k.key == keyword for k in node.kwargs)
                 or node.dyn_args is not None or node.dyn_kwargs is not None)
        if not given:
            return [(node.lineno, _needs(name))]
    return []


class PluginMap(dict):
    """Jinja2's filters (or tests) that takes in Ansible's the first time a name Jinja2 lacks is asked
    for: at compile time for `| name` and `is name`, at run time for `map('name')`, `select('name')`."""

    def __init__(self, kind: str, builtins: c.Mapping[str, Any], workspace: Path | None) -> None:
        super().__init__(builtins)
        self._kind = kind
        self._workspace = workspace
        self._loaded = False

    def _load(self, name: str) -> bool:
        short = short_name(name)
        if short != name and dict.__contains__(self, short):
            self[name] = dict.__getitem__(self, short)
            return True
        if self._loaded:
            return False
        self._loaded = True
        for key, value in ansible_plugins(self._kind, self._workspace).items():
            self.setdefault(key, value)
        return dict.__contains__(self, name) or (short != name and self._load(name))

    def __missing__(self, name: str) -> Any:
        if isinstance(name, str) and self._load(name):
            return dict.__getitem__(self, name)
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or (isinstance(name, str) and self._load(name))

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default


_ITERATORS = (c.Iterator, c.ItemsView, c.KeysView, c.ValuesView)


def listed(value: Any) -> Any:
    """A filter's result as the template module hands it on: an iterator becomes a list."""
    return list(value) if isinstance(value, _ITERATORS) else value


def listing(function: Any) -> Any:
    """A Jinja2 filter whose iterators come back as lists, as the template module returns them."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return listed(function(*args, **kwargs))

    return wrapper


def _plain(value: Any) -> Any:
    """Ansible's tagged values (from_yaml's, with their origin) as the plain types they stand for."""
    kind = type(value)
    if kind in (str, int, float, bool, type(None), VaultText):  # a vault value passed through stays one
        return value
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    for plain in (bool, str, int, float):
        if isinstance(value, plain):
            return plain(value)
    return value


class PluginFailed(jinja2.TemplateRuntimeError):
    """An Ansible filter or test raised: named, with its exception's type and first line."""


# Ansible's set-like filters go through a Python set: for strings (whose hashes differ between
# processes) the order of the result differs from run to run, in Ansible as it would here. golive
# puts such results in the order of the inputs; results whose order does not vary (numbers) stay
# as Ansible gives them.
_SET_FILTERS = frozenset({"union", "intersect", "difference", "symmetric_difference"})


def _fixed_hash(value: Any) -> bool:
    return value is None or isinstance(value, int | float) or (
        isinstance(value, tuple) and all(_fixed_hash(v) for v in value))


def _in_input_order(result: list[Any], inputs: tuple[Any, ...]) -> list[Any]:
    if all(_fixed_hash(v) for v in result):
        return result
    ordered: list[Any] = []
    for value in (v for given in inputs for v in given):
        if value in result and value not in ordered:
            ordered.append(value)
    return ordered


def _first_undefined(args: tuple[Any, ...], kwargs: dict[str, Any]) -> jinja2.Undefined | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, jinja2.Undefined):
            return value
    return None


def _wrap(kind: str, name: str, function: Any) -> Any:
    """An Ansible plugin called as the template module calls it (see the module docstring)."""
    # of the filters marked accept_args_markers, ternary takes an undefined argument as it is (mandatory
    # has its own adapter; type_debug would name golive's undefined class, so it fails as the others)
    accepts_undefined = name == "ternary"
    needs = NEEDS_ARGUMENT.get(name) if kind == "filter" else None

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not accepts_undefined and (undefined := _first_undefined(args, kwargs)) is not None:
            return undefined
        _no_vault_text(name, args, kwargs)
        if name == "type_debug":  # a vault value is a str to Ansible too
            args = tuple(str(a) if isinstance(a, VaultText) else a for a in args)
        if needs is not None:
            keyword, position, _ = needs
            offset = 1 + (getattr(function, "jinja_pass_arg", None) is not None)  # the value, the environment
            given = kwargs.get(keyword, args[offset + position] if len(args) > offset + position else None)
            if given is None:
                raise NotReproducible(_needs(name))
        try:
            result = function(*args, **kwargs)
            if name in _SET_FILTERS and isinstance(result, list):
                result = _in_input_order(result, args[1:])  # args[0] is the environment
            return bool(result) if kind == "test" else _plain(listed(result))  # as the template module does
        except jinja2.TemplateError:
            raise
        except Exception as error:
            text = str(error).strip().splitlines()
            raise PluginFailed(f"the {kind} {name!r} failed: {type(error).__name__}: {text[0] if text else ''}") \
                from error

    return wrapper


def _mandatory(value: Any, msg: str | None = None) -> Any:
    """Ansible's `mandatory`, which recognises Ansible's undefined markers only: golive's undefined
    fails with the filter's message (an undefined-variable error, reported with the others)."""
    if isinstance(value, jinja2.Undefined):
        name = value._undefined_name
        named = f"{shown(name)} " if name is not None else ""
        missing = type(value)(hint=msg or f"Mandatory variable {named}not defined.")
        missing._fail_with_undefined_error()
        return missing
    return value


def _vault_encrypted(test: Any) -> Any:
    def vault_encrypted(value: Any) -> Any:
        return True if isinstance(value, VaultText) else test(value)

    return vault_encrypted


def _refusing(kind: str, name: str, reason: str) -> Any:
    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise NotReproducible(f"the {kind} {name!r} is not supported: it {reason}")

    return refused


def ansible_plugins(kind: str, workspace: Path | None) -> dict[str, Any]:
    """ansible-core's filters or tests by every name the template module knows them by."""
    from golive.adapters.ansible_env import import_ansible

    if workspace is not None:
        import_ansible(workspace)  # ansible reads its settings when first imported
    return _ansible_plugins(kind)


@functools.cache
def _ansible_plugins(kind: str) -> dict[str, Any]:
    import importlib

    functions: dict[str, Any] = {}
    for module in _FILTER_MODULES if kind == "filter" else _TEST_MODULES:
        loaded = importlib.import_module(f"ansible.plugins.{kind}.{module}")
        plugins = loaded.FilterModule().filters() if kind == "filter" else loaded.TestModule().tests()
        functions.update(plugins)
    refused = REFUSED_FILTERS if kind == "filter" else REFUSED_TESTS
    wrapped = {}
    for name, function in functions.items():
        if name in (DEFAULT_FILTERS if kind == "filter" else DEFAULT_TESTS) and name not in JINJA_REPLACED:
            continue
        if name in refused:
            wrapped[name] = _refusing(kind, name, refused[name])
        elif name == "mandatory":
            wrapped[name] = _mandatory
        elif name == "vault_encrypted":
            wrapped[name] = _vault_encrypted(_wrap(kind, name, function))
        else:
            wrapped[name] = _wrap(kind, name, function)
    for name in list(wrapped):
        for prefix in FQCN_PREFIXES:
            wrapped[prefix + name] = wrapped[name]
    return wrapped
