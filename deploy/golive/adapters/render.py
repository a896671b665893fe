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
- templates run in Jinja2's sandbox, as Ansible's do;
- a filter's or a function call's iterator (`map`, `zip`, `dict.items()`) comes back as a list;
- `omit` prints nothing and leaves the list or mapping it is in; a whole template that is `omit` is
  refused, as the template module refuses it;
- Ansible's filters and tests are ansible-core's own, imported only when a template uses one; what
  would not give the same bytes from the same inputs (`now()`, lookups, unseeded `random`, the
  controller's files) is refused (golive.adapters.ansible_filters).
StrictUndefined makes a missing variable an error that names the template and line; a template
with several is rendered once more, noting each instead of stopping at the first, so that all of
them are reported together. No message shows a variable's value: Jinja2's repr() of a key is
replaced by the key as written or by its type, and whatever a failing filter says is masked for
the host's secrets, escaped as a repr or JSON would escape them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from contextvars import ContextVar
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.defaults import DEFAULT_FILTERS
from jinja2.lexer import TOKEN_STRING, TOKEN_VARIABLE_BEGIN, TOKEN_VARIABLE_END, Lexer
from jinja2.nativetypes import NativeEnvironment, NativeTemplate
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from jinja2.utils import missing, object_type_repr

from golive.adapters.ansible_filters import (
    JINJA_REPLACED,
    REFUSED_GLOBALS,
    NotReproducible,
    PluginMap,
    Refused,
    VaultText,
    listed,
    listing,
    refusals,
    shown,
)
from golive.core.errors import BadInput, Problem
from golive.core.model import AppDefinition, Host
from golive.core.redact import MASK
from golive.core.release import RenderedConfig, RenderedFile

TEMPLATES = "config_templates"
TEMPLATE_MARKERS = ("{{", "{%", "{#")  # a string holding one of these is a template, as Ansible decides
ANSIBLE_OVERRIDE_HEADER = "#jinja2:"  # Ansible-only per-template options; golive cannot honour them


class GoliveUndefined(jinja2.StrictUndefined):
    """StrictUndefined whose message shows no value: Jinja2's says `'dict object' has no attribute
    '<key>'` with repr() of the key, and a key is often a variable's value (`{{ users[name] }}`)."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        if self._undefined_obj is missing:
            return f"{shown(self._undefined_name)} is undefined"
        owner = object_type_repr(self._undefined_obj)
        if isinstance(self._undefined_name, str):
            return f"'{owner}' has no attribute {shown(self._undefined_name)}"
        return f"{owner} has no element {shown(self._undefined_name)}"


_NOTED: ContextVar[list[tuple[str, int, str]] | None] = ContextVar("golive_undefined_noted", default=None)


def _note(undefined: GoliveUndefined) -> None:
    """Note an undefined value's use with the template file and line it is used on."""
    noted = _NOTED.get()
    frame = sys._getframe(2)
    while frame is not None:
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            if noted is not None:
                noted.append((template.filename or "", template.get_corresponding_lineno(frame.f_lineno),
                              undefined._undefined_message))
            return
        frame = frame.f_back


def _noting(result: Any) -> Callable[..., Any]:
    def use(self: GoliveUndefined, *_args: Any, **_kwargs: Any) -> Any:
        _note(self)
        return self if result is _ITSELF else result() if callable(result) else result

    return use


_ITSELF = object()


class _NotingUndefined(GoliveUndefined):
    """For finding every undefined variable of a template in one render: each use that
    StrictUndefined fails on is noted with its line, and the render goes on as if the value were
    empty. Only used after a render failed on an undefined variable."""

    __slots__ = ()
    _fail_with_undefined_error = _noting(_ITSELF)  # type: ignore[assignment]
    __str__ = _noting("")  # type: ignore[assignment]
    __iter__ = _noting(lambda: iter(()))  # type: ignore[assignment]
    __len__ = __hash__ = __int__ = _noting(0)  # type: ignore[assignment]
    __float__ = _noting(0.0)  # type: ignore[assignment]
    __complex__ = _noting(0j)  # type: ignore[assignment]
    __bool__ = __eq__ = __contains__ = __lt__ = __le__ = __gt__ = __ge__ = _noting(False)  # type: ignore[assignment]
    __ne__ = _noting(True)  # type: ignore[assignment]
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _noting(_ITSELF)
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __pow__ = __rpow__ = _noting(_ITSELF)
    __pos__ = __neg__ = __call__ = __getitem__ = _noting(_ITSELF)

    def __getattr__(self, name: str) -> Any:
        if name[:2] == "__" and name[-2:] == "__":
            raise AttributeError(name)
        _note(self)
        return self


class _Omit:
    """Ansible's `omit`: prints nothing, and leaves the list or mapping it is in."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "omit"


OMIT = _Omit()


@jinja2.pass_environment
def _undef(environment: jinja2.Environment, hint: str | None = None) -> jinja2.Undefined:
    """Ansible's `undef()`: a value that fails when used, with the hint as the message."""
    return environment.undefined(hint=hint or "Mandatory variable has not been overridden")


def _refused_global(name: str) -> Callable[..., Any]:
    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise NotReproducible(f"{name}() is not supported: {REFUSED_GLOBALS[name]}")

    return refused


_GLOBALS = {"omit": OMIT, "undef": _undef, **{name: _refused_global(name) for name in REFUSED_GLOBALS}}
# Jinja2's filters, their iterators as lists; its `random` gives way to Ansible's seeded one
_JINJA_FILTERS = {name: listing(function) for name, function in DEFAULT_FILTERS.items() if name not in JINJA_REPLACED}


@jinja2.pass_context
def _finalize(_context: Any, value: Any) -> Any:
    """Each printed value, as is: taking the context stops Jinja2 from folding `{{ None }}` into the
    text at compile time. An undefined variable fails here, so the error names the template's line
    (the plain Undefined of an if-expression without else prints nothing, as in Jinja2)."""
    if isinstance(value, jinja2.StrictUndefined):
        value._fail_with_undefined_error()
        return None
    return value


ENVIRONMENT_OPTIONS = {
    "undefined": GoliveUndefined,
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
        return [_finalized(item, top_level) for item in value if item is not OMIT]
    if type(value) is dict:
        return {_finalized(k, top_level): _finalized(v, top_level) for k, v in value.items() if v is not OMIT}
    if top_level and isinstance(value, Mapping):
        return {_finalized(k, top_level): _finalized(v, top_level) for k, v in value.items() if v is not OMIT}
    if top_level and isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return [_finalized(item, top_level) for item in value if item is not OMIT]
    return value


def _concat(printed: Iterable[Any]) -> Any:
    """Join a template's output as Ansible does: None and omit print nothing, a single node keeps its type."""
    values = [node for node in printed if node is not None]
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return "".join(str(_finalized(value, top_level=False)) for value in values if value is not OMIT)


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
    if result is OMIT:
        raise jinja2.TemplateRuntimeError("the whole template is `omit`, which Ansible's template module refuses "
                                          "to write")
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
    sandboxed like Ansible's: a template reaches no private attribute. `workspace` holds the
    ansible.cfg that Ansible's filters are imported with, if a template needs them."""

    concat = staticmethod(_concat)  # type: ignore[assignment]
    template_class = _Template

    def __init__(self, *args: Any, workspace: Path | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters = PluginMap("filter", _JINJA_FILTERS, workspace)
        self.tests = PluginMap("test", self.tests, workspace)
        self.globals.update(_GLOBALS)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        found = refusals(tree)
        if found:
            raise Refused(found, name, filename)
        return tree

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        return listed(super().call(context, obj, *args, **kwargs))

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        return self.undefined(f"access to attribute {shown(attribute)} of {type(obj).__name__!r} object is unsafe.",
                              name=attribute, obj=obj, exc=SecurityError)


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
        self._environments: dict[tuple[str, bool], jinja2.Environment] = {}
        self._string_environments: dict[bool, jinja2.Environment] = {}
        self._contexts: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._strings: dict[str, tuple[jinja2.Template, frozenset[str]]] = {}
        self._paths: dict[tuple[str, str], str] = {}
        self._templates: dict[tuple[str, str], tuple[str, jinja2.Template]] = {}

    def environment(self, customer: str, noting: bool = False) -> jinja2.Environment:
        """The customer's environment; `noting` the one that notes every undefined variable."""
        if (customer, noting) not in self._environments:
            loader = jinja2.FileSystemLoader([str(p) for p in template_dirs(self.workspace, self.app, customer)])
            options = {**ENVIRONMENT_OPTIONS, "undefined": _NotingUndefined} if noting else ENVIRONMENT_OPTIONS
            self._environments[customer, noting] = AnsibleCompatibleEnvironment(loader=loader,
                                                                                workspace=self.workspace, **options)
        return self._environments[customer, noting]

    def _string_environment(self, noting: bool = False) -> jinja2.Environment:
        if noting not in self._string_environments:
            options = {**ENVIRONMENT_OPTIONS, "undefined": _NotingUndefined} if noting else ENVIRONMENT_OPTIONS
            self._string_environments[noting] = AnsibleCompatibleStringEnvironment(workspace=self.workspace, **options)
        return self._string_environments[noting]

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
            env = self._string_environment()
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
        if path in host.vault_paths and isinstance(value, str):
            return VaultText(value)
        if _is_template(value) and path not in host.vault_paths:
            try:
                template, names = self._from_string(value)
                return _ansible_result(value, template.render({name: lookup(name) for name in names & known}))
            except BadInput:
                raise
            except Exception as error:  # a user's template: whatever it raises is reported, not a traceback
                message = _masked(_message(error), host)
                raise BadInput(Problem(host.where(key), f"variable {key!r}: {message}")) from None
        if isinstance(value, dict):
            return {k: self._resolve(v, host, key, f"{path}.{k}", lookup, known) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v, host, key, f"{path}[{i}]", lookup, known) for i, v in enumerate(value)]
        return value

    def render_string(self, text: str, host: Host, version: str = "", what: str = "") -> str:
        if not text:
            return ""
        setting = what or "a templated setting"
        context = self.context(host, version)
        try:
            template, _ = self._from_string(text)
            return _as_text(text, template.render(context))
        except Exception as error:  # a user's template: whatever it raises is reported, not a traceback
            if isinstance(error, jinja2.UndefinedError):
                noting = self._string_environment(noting=True)
                noted = _every_undefined(lambda: noting.from_string(text).render(context))
                if noted:
                    raise BadInput([Problem(self.app.source, f"{setting}: line {line}: undefined variable: "
                                                             f"{_masked(message, host)}")
                                    for _, line, message in noted]) from None
            raise BadInput(Problem(self.app.source, f"{setting}: {_masked(_message(error), host)}")) from None

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

    def _shown(self, filename: str | None, default: str) -> str:
        """A template file as the user knows it: relative to the workspace."""
        if not filename or filename.startswith("<"):
            return default
        path = Path(filename)
        return str(path.relative_to(self.workspace)) if path.is_relative_to(self.workspace) else filename

    def _folders(self, customer: str) -> str:
        folders = template_dirs(self.workspace, self.app, customer)
        return " or ".join(f"{d.relative_to(self.workspace)}/" for d in folders if d.is_relative_to(self.workspace))

    def render(self, host: Host, version: str) -> RenderedConfig:
        """Every config file of the host; all template problems reported at once."""
        files: list[RenderedFile] = []
        problems: list[Problem] = []
        for spec in self.app.templates:
            text, found = self.render_template(host, version, spec.src)
            problems.extend(found)
            if text is not None:
                files.append(RenderedFile(spec.dest, text.encode("utf-8"), spec.mode, spec.secret))
        if problems:
            raise BadInput(problems)
        return RenderedConfig(host.name, tuple(files))

    def render_template(self, host: Host, version: str, src: str) -> tuple[str | None, list[Problem]]:
        """One template file rendered for a host (a release's config file, a provisioned file or
        unit), or the problems that stop it, each where it is."""
        context = self.context(host, version)
        shown_path = self.template_path(host.customer, src)
        try:
            source, template = self._template(host.customer, src)
        except jinja2.TemplateNotFound:
            folder = shown_path.rsplit("/", 1)[0]
            return None, [Problem(self.app.source, f"template {src!r} not found in {folder}/")]
        except jinja2.TemplateSyntaxError as error:
            return None, self._syntax_problems(error, shown_path)
        except UnicodeDecodeError as error:
            return None, [Problem(shown_path, f"not UTF-8 text (byte {error.start}); templates must be UTF-8")]
        if source.startswith(ANSIBLE_OVERRIDE_HEADER):
            return None, [Problem(f"{shown_path}:1", f"{ANSIBLE_OVERRIDE_HEADER} template options are Ansible's "
                                                     "alone and would render differently here; remove the line")]
        try:
            return _as_text(source, template.render(context)), []
        except Exception as error:  # a user's template: whatever it raises is reported, not a traceback
            return None, self._render_problems(error, host, src, context, shown_path)

    def _syntax_problems(self, error: jinja2.TemplateSyntaxError, shown_path: str) -> list[Problem]:
        where = self._shown(error.filename, shown_path)
        if isinstance(error, Refused):
            return [Problem(f"{where}:{line}", message) for line, message in error.found]
        kind = "" if isinstance(error, jinja2.TemplateAssertionError) else "template syntax error: "
        return [Problem(f"{where}:{error.lineno}", f"{kind}{error.message}")]

    def _render_problems(self, error: Exception, host: Host, src: str, context: dict[str, Any],
                         shown_path: str) -> list[Problem]:
        """What went wrong rendering one template for one host, each where it happened (an included
        template's own file and line)."""
        if isinstance(error, jinja2.TemplateSyntaxError):  # in an included template, compiled while rendering
            return self._syntax_problems(error, shown_path)
        if isinstance(error, jinja2.UndefinedError):
            env = self.environment(host.customer, noting=True)
            noted = _every_undefined(lambda: env.get_template(src).render(context))
            if noted:
                return [Problem(f"{self._shown(filename, shown_path)}:{line}",
                                f"undefined variable: {_masked(message, host)} (host {host.name})")
                        for filename, line, message in noted]
        filename, line = _template_frame(error.__traceback__)
        where = self._shown(filename, shown_path)
        where = f"{where}:{line}" if line else where
        if isinstance(error, jinja2.TemplateNotFound):
            missing_names = getattr(error, "templates", None) or [error.name]
            names = " nor ".join(shown(str(name)) for name in missing_names)
            return [Problem(where, f"template {names} (included, imported or extended here) not found in "
                                   f"{self._folders(host.customer)}")]
        return [Problem(where, f"{_masked(_message(error), host)} (host {host.name})")]


def _every_undefined(render: Callable[[], Any]) -> list[tuple[str, int, str]]:
    """Each undefined variable a render uses, with its file and line: the render goes as far as it
    can (whatever stops it was reported already by the render that failed)."""
    noted: list[tuple[str, int, str]] = []
    token = _NOTED.set(noted)
    try:
        render()
    except Exception:
        pass
    finally:
        _NOTED.reset(token)
    return list(dict.fromkeys(noted))


def _message(error: BaseException) -> str:
    """What went wrong, in one line: Jinja2's and golive's own messages as they are; for anything
    else (a filter, a Python operation), its type and the first line of what it says."""
    if isinstance(error, jinja2.UndefinedError):
        return f"undefined variable: {error.message}"
    if isinstance(error, Refused):
        return "; ".join(message for _, message in error.found)
    if isinstance(error, jinja2.TemplateError):
        return error.message or type(error).__name__
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _masked(message: str, host: Host) -> str:
    """A message with the host's secrets masked as they are and as a repr() or JSON would show them
    (escaped backslashes and quotes, once or twice over): the Redactor matches only the raw value."""
    forms: set[str] = set()
    for secret in host.secret_values:
        if len(secret) < 4:
            continue
        found = {secret}
        for _ in range(2):
            found |= {escaped for text in found for escaped in (
                repr(text)[1:-1], json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1],
                text.encode("unicode_escape").decode("ascii"))}
        forms |= found
    for form in sorted(forms, key=len, reverse=True):
        message = message.replace(form, MASK)
    return message


def _template_frame(tb: Any) -> tuple[str | None, int | None]:
    """The innermost template frame of a traceback: Jinja2 rewrites tracebacks so that template
    frames carry the template's file and line."""
    found: tuple[str | None, int | None] = (None, None)
    while tb is not None:
        if "__jinja_exception__" in tb.tb_frame.f_globals:
            found = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return found
