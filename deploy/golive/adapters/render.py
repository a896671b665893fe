"""Config rendering: one Jinja2 environment for every engine, so every engine writes the same bytes.

The options match Ansible's template module (trim_blocks on, trailing newline kept), and
StrictUndefined makes a missing variable an error that names the template and line.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from golive.core.errors import BadInput, Problem
from golive.core.model import AppDefinition, Host
from golive.core.release import RenderedConfig, RenderedFile

TEMPLATES = "config_templates"
ENVIRONMENT_OPTIONS = {
    "undefined": jinja2.StrictUndefined,
    "trim_blocks": True,
    "lstrip_blocks": False,
    "keep_trailing_newline": True,
    "newline_sequence": "\n",
    "autoescape": False,
}
_MAX_VARIABLE_NESTING = 10


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


class Renderer:
    def __init__(self, workspace: Path, app: AppDefinition) -> None:
        self.workspace = workspace
        self.app = app
        self._environments: dict[str, jinja2.Environment] = {}
        self._contexts: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._strings: dict[tuple[str, str], jinja2.Template] = {}

    def environment(self, customer: str) -> jinja2.Environment:
        if customer not in self._environments:
            loader = jinja2.FileSystemLoader([str(p) for p in template_dirs(self.workspace, self.app, customer)])
            self._environments[customer] = jinja2.Environment(loader=loader, **ENVIRONMENT_OPTIONS)
        return self._environments[customer]

    def context(self, host: Host, version: str) -> dict[str, Any]:
        """The host's variables with templated values (`"{{ ansible_host }}"`) resolved, as Ansible does."""
        key = (host.customer, host.name, version)
        if key not in self._contexts:
            self._contexts[key] = self._resolved_context(host, version)
        return self._contexts[key]

    def _from_string(self, env: jinja2.Environment, customer: str, text: str) -> jinja2.Template:
        """Compiling is most of the cost of a small template; the same strings recur for every host."""
        key = (customer, text)
        if key not in self._strings:
            self._strings[key] = env.from_string(text)
        return self._strings[key]

    def _resolved_context(self, host: Host, version: str) -> dict[str, Any]:
        env = self.environment(host.customer)
        context: dict[str, Any] = {**host.vars, **golive_context(self.app, host, version)}
        for _ in range(_MAX_VARIABLE_NESTING):
            changed = False
            for key, value in list(context.items()):
                resolved = self._resolve(env, value, context, host, key)
                if resolved != value:
                    context[key] = resolved
                    changed = True
            if not changed:
                return context
        raise BadInput(Problem(f"host {host.name}", "inventory variables refer to each other in a loop"))

    def _resolve(self, env: jinja2.Environment, value: Any, context: Mapping[str, Any], host: Host, key: str) -> Any:
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            try:
                return self._from_string(env, host.customer, value).render(context)
            except jinja2.TemplateError as error:
                raise BadInput(Problem(host.where(key), f"variable {key!r}: {_jinja_message(error)}")) from None
        if isinstance(value, dict):
            return {k: self._resolve(env, v, context, host, key) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(env, v, context, host, key) for v in value]
        return value

    def render_string(self, text: str, host: Host, version: str = "", what: str = "") -> str:
        if not text:
            return ""
        try:
            template = self._from_string(self.environment(host.customer), host.customer, text)
            return template.render(self.context(host, version))
        except jinja2.TemplateError as error:
            raise BadInput(Problem(f"{self.app.source}", f"{what or text!r}: {_jinja_message(error)}")) from None

    def template_path(self, customer: str, src: str) -> str:
        for directory in template_dirs(self.workspace, self.app, customer):
            if (directory / src).is_file():
                return str((directory / src).relative_to(self.workspace))
        return f"{TEMPLATES}/{self.app.name}/{src}"

    def render(self, host: Host, version: str) -> RenderedConfig:
        """Every config file of the host; all template problems reported at once."""
        env = self.environment(host.customer)
        context = self.context(host, version)
        files: list[RenderedFile] = []
        problems: list[Problem] = []
        for spec in self.app.templates:
            shown = self.template_path(host.customer, spec.src)
            try:
                text = env.get_template(spec.src).render(context)
            except jinja2.TemplateNotFound:
                folder = shown.rsplit("/", 1)[0]
                problems.append(Problem(self.app.source, f"template {spec.src!r} not found in {folder}/"))
                continue
            except jinja2.TemplateSyntaxError as error:
                problems.append(Problem(f"{shown}:{error.lineno}", f"template syntax error: {error.message}"))
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
