"""Config rendering: one Jinja2 environment for every engine, so every engine writes the same bytes.

The Ansible engine writes config files with Ansible's template module; this renderer reproduces
what ansible-core 2.19 templating produces, so both engines write the same bytes and the same
config hash (tests/integration/test_ansible_rendering.py holds them to it):
- trim_blocks on, lstrip_blocks off, "\\n" newlines;
- trailing newlines: Jinja2 drops the template's last newline, then the newlines the result lacks at
  its end compared with the template source are added back (Ansible does not use
  keep_trailing_newline: with it, a file ending in `{% endif %}` or in a value that ends with a
  newline comes out with a different number of newlines);
- an expression that is None prints nothing; tuples print as lists;
- a template (or a templated variable) that is one single expression keeps its value's type: a
  number or a list, written to a file, is str() of it with no newline added;
- templated inventory variables (`"{{ ansible_host }}"`) are rendered once each, after the
  variables they use, and inline vault values are never templated;
- in a templated value (not in a template file) backslashes in `{{ }}` string literals are kept;
- templates run in Jinja2's sandbox, as Ansible's do.
StrictUndefined makes a missing variable an error that names the template and line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.lexer import TOKEN_STRING, TOKEN_VARIABLE_BEGIN, TOKEN_VARIABLE_END, Lexer
from jinja2.nativetypes import NativeEnvironment, NativeTemplate
from jinja2.sandbox import SandboxedEnvironment

from golive.core.errors import BadInput, Problem
from golive.core.model import AppDefinition, Host
from golive.core.release import RenderedConfig, RenderedFile

TEMPLATES = "config_templates"
TEMPLATE_MARKERS = ("{{", "{%", "{#")  # a string holding one of these is a template, as Ansible decides
ANSIBLE_OVERRIDE_HEADER = "#jinja2:"  # Ansible-only per-template options; golive cannot honour them


@jinja2.pass_context
def _finalize(_context: Any, value: Any) -> Any:
    """Each printed value, as is: taking the context stops Jinja2 from folding `{{ None }}` into the
    text at compile time. An undefined variable fails here, so the error names the template's line
    (the plain Undefined of an if-expression without else prints nothing, as in Jinja2)."""
    if isinstance(value, jinja2.StrictUndefined):
        value._fail_with_undefined_error()
    return value


ENVIRONMENT_OPTIONS = {
    "undefined": jinja2.StrictUndefined,
    "trim_blocks": True,
    "lstrip_blocks": False,
    "keep_trailing_newline": False,  # Ansible restores trailing newlines itself, see _ansible_result
    "newline_sequence": "\n",
    "autoescape": False,
    "finalize": _finalize,
}


def _finalized(value: Any, top_level: bool) -> Any:
    """A value as Ansible hands it over: tuples become lists, all the way down; a whole result that
    is some other mapping or iterable becomes a dict or a list."""
    if type(value) in (list, tuple):
        return [_finalized(item, top_level) for item in value]
    if type(value) is dict:
        return {_finalized(k, top_level): _finalized(v, top_level) for k, v in value.items()}
    if top_level and isinstance(value, Mapping):
        return {_finalized(k, top_level): _finalized(v, top_level) for k, v in value.items()}
    if top_level and isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return [_finalized(item, top_level) for item in value]
    return value


def _concat(nodes: Iterable[Any]) -> Any:
    """Join a template's output as Ansible does: None prints nothing, a single node keeps its type."""
    values = [node for node in nodes if node is not None]
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return "".join(str(_finalized(value, top_level=False)) for value in values)


def _trailing_newlines(text: str) -> int:
    return len(text) - len(text.rstrip("\n"))


def _ansible_result(source: str, result: Any) -> Any:
    """A rendered result as Ansible returns it: a string gets back the trailing newlines its template
    source ends with and it lacks; any other value is finalized."""
    if not isinstance(result, str):
        return _finalized(result, top_level=True)
    return result + "\n" * max(0, _trailing_newlines(source) - _trailing_newlines(result))


def _as_text(source: str, result: Any) -> str:
    """What Ansible's template module writes for a rendered result."""
    value = _ansible_result(source, result)
    return "" if value is None else value if isinstance(value, str) else str(value)


class _Template(NativeTemplate):
    def render(self, *args: Any, **kwargs: Any) -> Any:
        context = self.new_context(dict(*args, **kwargs))
        try:
            return _concat(self.root_render_func(context))
        except Exception:
            return self.environment.handle_exception()


class AnsibleCompatibleEnvironment(SandboxedEnvironment, NativeEnvironment):
    """Jinja2 producing the values ansible-core 2.19 templating produces (see the module docstring),
    sandboxed like Ansible's: a template reaches no private attribute."""

    concat = staticmethod(_concat)  # type: ignore[assignment]
    template_class = _Template


class _YamlStringLexer(Lexer):
    """Ansible doubles the backslashes of string constants inside `{{ }}` in a value from YAML (not in a
    template file), so that only YAML interprets them: `'{{ "C:\\new" }}'` keeps its backslash."""

    def tokeniter(self, *args: Any, **kwargs: Any) -> Iterator[tuple[int, str, str]]:
        in_variable = False
        for lineno, kind, value in super().tokeniter(*args, **kwargs):
            if kind == TOKEN_VARIABLE_BEGIN:
                in_variable = True
            elif kind == TOKEN_VARIABLE_END:
                in_variable = False
            elif in_variable and kind == TOKEN_STRING:
                value = value.replace("\\", "\\\\")
            yield lineno, kind, value


class AnsibleCompatibleStringEnvironment(AnsibleCompatibleEnvironment):
    """For templated values from YAML: inventory variables and golive.yml settings."""

    @cached_property
    def lexer(self) -> Lexer:  # type: ignore[override]
        return _YamlStringLexer(self)


def template_dirs(workspace: Path, app: AppDefinition, customer: str) -> list[Path]:
    """The customer's override directory first: a template there wins over the default."""
    base = workspace / TEMPLATES / app.name
    return [base / "customers" / customer, base]


def golive_context(app: AppDefinition, host: Host, version: str) -> dict[str, Any]:
    """Names golive adds to every template; the Ansible roles define the same."""
    return {
        "golive_customer": host.customer,
        "golive_environment": host.environment,
        "golive_host": host.name,
        "golive_release": version,
        "golive_app_root": app.root,
        "golive_config_dir": app.config_dir,
    }


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and any(marker in value for marker in TEMPLATE_MARKERS)


class Renderer:
    def __init__(self, workspace: Path, app: AppDefinition) -> None:
        self.workspace = workspace
        self.app = app
        self._environments: dict[str, jinja2.Environment] = {}
        self._string_environment = AnsibleCompatibleStringEnvironment(**ENVIRONMENT_OPTIONS)
        self._contexts: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._strings: dict[str, tuple[jinja2.Template, frozenset[str]]] = {}
        self._paths: dict[tuple[str, str], str] = {}
        self._templates: dict[tuple[str, str], tuple[str, jinja2.Template]] = {}

    def environment(self, customer: str) -> jinja2.Environment:
        if customer not in self._environments:
            loader = jinja2.FileSystemLoader([str(p) for p in template_dirs(self.workspace, self.app, customer)])
            self._environments[customer] = AnsibleCompatibleEnvironment(loader=loader, **ENVIRONMENT_OPTIONS)
        return self._environments[customer]

    def context(self, host: Host, version: str) -> dict[str, Any]:
        """The host's variables with templated values (`"{{ ansible_host }}"`) resolved, as Ansible does."""
        key = (host.customer, host.name, version)
        if key not in self._contexts:
            self._contexts[key] = self._resolved_context(host, version)
        return self._contexts[key]

    def _from_string(self, text: str) -> tuple[jinja2.Template, frozenset[str]]:
        """A templated value compiled, with the variables it names. Compiling is most of the cost of a
        small template; the same strings recur for every host."""
        if text not in self._strings:
            env = self._string_environment
            self._strings[text] = (env.from_string(text), frozenset(meta.find_undeclared_variables(env.parse(text))))
        return self._strings[text]

    def _resolved_context(self, host: Host, version: str) -> dict[str, Any]:
        """Each variable rendered once, after the variables it names (as Ansible resolves them lazily):
        a rendered value is never rendered again, so `{% raw %}{{ x }}{% endraw %}` stays `{{ x }}`."""
        raw: dict[str, Any] = {**host.vars, **golive_context(self.app, host, version)}
        resolved: dict[str, Any] = {}

        def resolve(key: str, chain: tuple[str, ...]) -> Any:
            if key not in resolved:
                if key in chain:
                    cycle = " -> ".join((*chain[chain.index(key):], key))
                    raise BadInput(Problem(host.where(key), f"inventory variables refer to each other in a loop: "
                                                            f"{cycle}"))
                resolved[key] = self._resolve(raw[key], host, key, key, lambda name: resolve(name, (*chain, key)),
                                              raw.keys())
            return resolved[key]

        return {key: resolve(key, ()) for key in raw}

    def _resolve(self, value: Any, host: Host, key: str, path: str, lookup: Callable[[str], Any],
                 known: Set[str]) -> Any:
        """One variable's value with its templates rendered; `path` locates nested values, so that
        inline `!vault` values, which Ansible never templates, stay as they are."""
        if _is_template(value) and path not in host.vault_paths:
            try:
                template, names = self._from_string(value)
                return _ansible_result(value, template.render({name: lookup(name) for name in names & known}))
            except jinja2.TemplateError as error:
                raise BadInput(Problem(host.where(key), f"variable {key!r}: {_jinja_message(error)}")) from None
        if isinstance(value, dict):
            return {k: self._resolve(v, host, key, f"{path}.{k}", lookup, known) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v, host, key, f"{path}[{i}]", lookup, known) for i, v in enumerate(value)]
        return value

    def render_string(self, text: str, host: Host, version: str = "", what: str = "") -> str:
        if not text:
            return ""
        try:
            template, _ = self._from_string(text)
            return _as_text(text, template.render(self.context(host, version)))
        except jinja2.TemplateError as error:
            raise BadInput(Problem(f"{self.app.source}", f"{what or text!r}: {_jinja_message(error)}")) from None

    def _template(self, customer: str, src: str) -> tuple[str, jinja2.Template]:
        """A template file's source and compiled template, read once per customer, not once per host."""
        key = (customer, src)
        if key not in self._templates:
            env = self.environment(customer)
            source, _, _ = env.loader.get_source(env, src)
            self._templates[key] = (source, env.get_template(src))
        return self._templates[key]

    def template_path(self, customer: str, src: str) -> str:
        key = (customer, src)
        if key not in self._paths:  # asked for every host; the answer is the customer's
            self._paths[key] = f"{TEMPLATES}/{self.app.name}/{src}"
            for directory in template_dirs(self.workspace, self.app, customer):
                if (directory / src).is_file():
                    self._paths[key] = str((directory / src).relative_to(self.workspace))
                    break
        return self._paths[key]

    def render(self, host: Host, version: str) -> RenderedConfig:
        """Every config file of the host; all template problems reported at once."""
        context = self.context(host, version)
        files: list[RenderedFile] = []
        problems: list[Problem] = []
        for spec in self.app.templates:
            shown = self.template_path(host.customer, spec.src)
            try:
                source, template = self._template(host.customer, spec.src)
                if source.startswith(ANSIBLE_OVERRIDE_HEADER):
                    problems.append(Problem(f"{shown}:1", f"{ANSIBLE_OVERRIDE_HEADER} template options are Ansible's "
                                                          "alone and would render differently here; remove the line"))
                    continue
                text = _as_text(source, template.render(context))
            except jinja2.TemplateNotFound:
                folder = shown.rsplit("/", 1)[0]
                problems.append(Problem(self.app.source, f"template {spec.src!r} not found in {folder}/"))
                continue
            except jinja2.TemplateSyntaxError as error:
                problems.append(Problem(f"{shown}:{error.lineno}", f"template syntax error: {error.message}"))
                continue
            except UnicodeDecodeError as error:
                problems.append(Problem(shown, f"not UTF-8 text (byte {error.start}); templates must be UTF-8"))
                continue
            except jinja2.TemplateError as error:
                line = _template_line(sys.exc_info()[2], shown)
                problems.append(
                    Problem(f"{shown}:{line}" if line else shown, f"{_jinja_message(error)} (host {host.name})")
                )
                continue
            files.append(RenderedFile(spec.dest, text.encode("utf-8"), spec.mode, spec.secret))
        if problems:
            raise BadInput(problems)
        return RenderedConfig(host.name, tuple(files))


def _jinja_message(error: jinja2.TemplateError) -> str:
    if isinstance(error, jinja2.UndefinedError):
        return f"undefined variable: {error.message}"
    return error.message or type(error).__name__


def _template_line(tb: Any, shown: str) -> int | None:
    """Jinja2 rewrites tracebacks so template frames carry the template's file and line."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(shown):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
