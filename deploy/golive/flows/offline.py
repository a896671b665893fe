"""The library API behind the CLI. Each function returns an Outcome or raises BadInput."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Any

from golive.core.errors import BadInput, Problem, merged
from golive.core.model import Host
from golive.core.outcome import Outcome
from golive.core.redact import mask_paths
from golive.core.release import RenderedConfig
from golive.core.schema import check_host_vars, expired_expectations
from golive.workspace import Workspace

UNRELEASED = "unreleased"


def validate(ws: Workspace, customer: str | None = None, today: date | None = None) -> Outcome:
    """Load everything, check every host's variables and render every template and command; report all
    problems."""
    from golive.flows.desired import rendered_commands

    names = [customer] if customer else ws.customer_names()
    if customer and customer not in ws.customer_names():
        ws.customer(customer)  # raises the unknown-customer message
    problems: list[Problem] = []
    hosts = rendered = 0
    for name in names:
        try:
            loaded = ws.customer(name)
        except BadInput as error:
            problems.extend(error.problems)
            continue
        for host in loaded.hosts:
            hosts += 1
            # how the host is reached (its ssh options, ssh_config, jump hosts), as deploy reads it
            problems.extend(p for p in host.connection.route_problems if p not in problems)
            host_problems = check_host_vars(ws.app, host)
            problems.extend(host_problems)
            if host_problems:
                continue
            try:
                if ws.is_database_host(host):  # runs the database steps: its connection must render
                    ws.database_connection(host)
                    continue
                ws.render(host, UNRELEASED)
                rendered += len(ws.app.templates)
                rendered_commands(ws, host, UNRELEASED)  # a hook naming an undefined variable, too
            except BadInput as error:
                problems.extend(p for p in error.problems if p not in problems)
        if ws.app.provision is not None:  # what `golive provision` would refuse, before any host
            from golive.flows.provision import declared_work

            _, found = declared_work(ws, name, loaded.hosts)
            problems.extend(p for p in found if p not in problems)
        for env in loaded.environments if ws.app.database else ():
            try:
                if env.hosts:
                    ws.database_host(name, env.name)
            except BadInput as error:
                problems.extend(p for p in error.problems if p not in problems)
    for name in expired_expectations(ws.app, today or date.today()):
        spec = ws.app.var(name)
        assert spec is not None  # expired_expectations names declared variables only
        problems.append(Problem(ws.app.source, f"the expected difference for variable {name!r} expired on "
                                               f"{spec.expires}: renew its 'expires' or remove the declaration"))
    if problems:
        raise BadInput(problems)
    warnings = [str(w) for w in merged(ws.warnings)]
    text = f"workspace ok: {len(names)} customer(s), {hosts} host(s), {rendered} file(s) rendered" + \
        (f", {len(warnings)} warning(s) (below)" if warnings else "")
    return Outcome({"ok": True, "customers": names, "hosts": hosts, "files_rendered": rendered,
                    "warnings": warnings}, text)


def inventory(ws: Workspace, customer: str) -> Outcome:
    """Every host with its environment, groups and merged variables, like ansible-inventory --list."""
    loaded = ws.customer(customer)
    hosts = {}
    for host in loaded.hosts:
        # by path first (a secret of any type and length), then every other text holding one
        masked = ws.redactor.data(mask_paths(dict(host.vars), host.secret_paths | ws.app.secret_var_names))
        hosts[host.name] = {
            "environment": host.environment,
            "groups": list(host.groups),
            "connection": _connection(host),
            "vars": masked,
        }
    lines = [f"customer {customer}"]
    for env in loaded.environments:
        lines.append(f"  {env.name}:")
        for host in env.hosts:
            route = host.connection.route
            reached = route.words() if route else \
                f"{host.connection.user}@{host.connection.address}:{host.connection.port} (not reachable as set: " \
                f"golive validate says why)"
            lines.append(f"    {host.name}  {reached}  groups: {', '.join(host.groups)}")
            for key, value in sorted(hosts[host.name]["vars"].items()):
                shown = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                lines.append(f"      {key}: {shown}")
    return Outcome({"customer": customer, "hosts": hosts}, "\n".join(lines))


def _connection(host: Host) -> dict[str, Any]:
    """How the host is reached: its address, port and user, and every jump host on the way."""
    route = host.connection.route
    if route is None:  # `golive validate` says why
        return {"address": host.connection.address, "port": host.connection.port, "user": host.connection.user}
    data: dict[str, Any] = {"address": route.target.address, "port": route.target.port, "user": route.target.user}
    if route.target.address != host.connection.address:
        data["name"] = host.connection.address
    if route.jumps:
        data["jumps"] = [{"address": j.address, "port": j.port, "user": j.user} for j in route.jumps]
    if route.proxy_command:
        data["proxy_command"] = route.proxy_command
    if route.config_file:
        data["ssh_config"] = route.config_file
    return data


def _describe_file(ws: Workspace, config: RenderedConfig, out_dir: Path | None) -> list[dict[str, Any]]:
    files = []
    for f in config.files:
        # A secret file shows neither its content nor anything derived from it (a weak password is
        # found from its sha256 by a dictionary in seconds; its size narrows the search).
        entry: dict[str, Any] = {"dest": f.dest, "mode": f"{f.mode:04o}", "secret": f.secret}
        if not f.secret:
            entry.update(sha256=f.sha256, size=len(f.content), content=f.content.decode("utf-8", errors="replace"))
        if out_dir is not None:
            entry["path"] = str(out_dir / config.host / f.dest)
        files.append(entry)
    return files


def render(ws: Workspace, customer: str, environment: str, host: str | None = None,
           out: str | None = None, version: str | None = None) -> Outcome:
    """Render a customer's config for an environment; write it under OUT/<host>/ or show it."""
    from golive.flows.desired import host_release_id

    version = version or UNRELEASED
    hosts = ws.hosts(customer, environment, [host] if host else None)
    out_dir = Path(out).resolve() if out else None
    data: dict[str, Any] = {"customer": customer, "environment": environment, "release": version, "hosts": {}}
    text: list[str] = []
    for h in hosts:
        config = ws.render(h, version)
        if out_dir is not None:
            target = out_dir / h.name
            # Host names and template dests are plain names (checked where they enter); this holds
            # the line should a new name ever reach here unchecked.
            if target.parent != out_dir or any(Path(f.dest).name != f.dest for f in config.files):
                raise BadInput(Problem(h.where("inventory_hostname"), f"host {h.name!r} would write outside {out}"))
            write_rendered(config, target)
        data["hosts"][h.name] = {"config_hash": config.hash, "release_id": host_release_id(ws, h, version, config),
                                 "files": _describe_file(ws, config, out_dir)}
        if out_dir is not None:
            written = f"{len(config.files)} file(s) -> {out_dir / h.name}"
            text.append(f"{h.name}: {written}  (config hash {config.hash[:12]})")
            continue
        text.append(f"=== {h.name} ({environment})  config hash {config.hash}")
        for f in config.files:
            if f.secret:
                text.append(f"--- {f.dest}  mode {f.mode:04o}  (secret file, not shown)")
            else:
                text.append(f"--- {f.dest}  mode {f.mode:04o}  sha256 {f.sha256[:16]}")
                text.append(f.content.decode("utf-8", errors="replace").rstrip("\n"))
    return Outcome(data, "\n".join(text))


def write_rendered(config: RenderedConfig, directory: Path) -> None:
    """Write rendered files atomically with their modes; secret files are 0600 from the start."""
    directory.mkdir(parents=True, exist_ok=True)
    for f in config.files:
        target = directory / f.dest
        temporary = directory / f".{f.dest}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if f.secret else f.mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(f.content)
        os.chmod(temporary, f.mode)
        os.replace(temporary, target)
