"""A workspace on disk: the application definition, the customers' inventories, templates and
the release store. Everything that reads the workspace goes through here."""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

from golive.adapters.appdef import load_app_definition
from golive.adapters.inventory_cache import CACHE_DIR, InventoryCache
from golive.adapters.render import Renderer
from golive.adapters.vault import VaultPassword, customer_names, inventory_versions, vault_password_file
from golive.core.database import CONNECTION_KEYS, DatabaseConnection
from golive.core.errors import BadInput, Problem
from golive.core.model import AppDefinition, Customer, Environment, Host
from golive.core.redact import Redactor
from golive.core.release import VERSION_PATTERN, Artifact, RenderedConfig, parse_sha256_file

VAULT_PASSWORD_ENV = "GOLIVE_VAULT_PASSWORD_FILE"


class Workspace:
    def __init__(self, root: str | Path = ".", vault_password_file: str | None = None) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise BadInput(f"workspace {root} is not a directory")
        self.vault_password_file = vault_password_file or os.environ.get(VAULT_PASSWORD_ENV) or None
        self.app: AppDefinition = load_app_definition(self.root)
        self.renderer = Renderer(self.root, self.app)
        self.redactor = Redactor()
        self._customers: dict[str, Customer] = {}
        self._variants: dict[str, Renderer] = {}
        self._artifact_files: dict[str, tuple[str | None, dict[str, dict[str, Any]] | None]] = {}

    @cached_property
    def vault_password(self) -> bytes | None:
        return VaultPassword(vault_password_file(self.root, self.vault_password_file)).read()

    @cached_property
    def inventory(self):  # -> AnsibleInventory; imported lazily, ansible-core costs ~0.2 s
        from golive.adapters.inventory import AnsibleInventory

        return AnsibleInventory(self.root, self.vault_password)

    @property
    def cache_dir(self) -> Path:
        """What golive may remember between runs (safe to delete): .golive-cache/ in the workspace."""
        return self.root / CACHE_DIR

    @cached_property
    def inventory_cache(self) -> InventoryCache:
        return InventoryCache(self.root, self.vault_password, inventory_versions())

    def customer_names(self) -> list[str]:
        return customer_names(self.root)

    def customer(self, name: str) -> Customer:
        if name not in self._customers:
            customer = self.inventory_cache.load(name)
            if customer is None:
                customer = self.inventory.load(self.app, name)
                self.inventory_cache.store(customer)
            self.redactor.add(customer.secret_values)
            self._customers[name] = customer
        return self._customers[name]

    def as_environment(self, customer: str, hosts: Iterable[Host], environment: str) -> dict[str, Host | Problem]:
        """Each host's variables as `environment` would set them (drift's counterpart of a host)."""
        return self.inventory.as_environment(self.app, self.customer(customer), hosts, environment)

    def environment(self, customer: str, environment: str) -> Environment:
        found = self.customer(customer).environment(environment)
        if found is None:
            known = ", ".join(e.name for e in self.app.environments)
            raise BadInput(f"unknown environment {environment!r} for customer {customer!r} (known: {known})")
        if not found.hosts:
            raise BadInput(f"environment {environment!r} of customer {customer!r} has no hosts in its inventory")
        return found

    def is_database_host(self, host: Host) -> bool:
        """The host runs the environment's database steps (it is in golive.yml's database.server_group)."""
        return self.app.database is not None and self.app.database.server_group in host.groups

    def hosts(self, customer: str, environment: str, only: list[str] | None = None) -> tuple[Host, ...]:
        """The environment's application hosts (its database host is not one: database_host)."""
        hosts = tuple(h for h in self.environment(customer, environment).hosts if not self.is_database_host(h))
        if not hosts:
            raise BadInput(f"environment {environment!r} of customer {customer!r} has no application hosts in its "
                           f"inventory")
        if only:
            unknown = [n for n in only if n not in {h.name for h in hosts}]
            if unknown:
                raise BadInput(f"unknown host {', '.join(unknown)} in {customer}/{environment} "
                               f"(known: {', '.join(h.name for h in hosts)})")
            hosts = tuple(h for h in hosts if h.name in only)
        return hosts

    def database_host(self, customer: str, environment: str) -> Host | None:
        """The host of the environment in the database server group; None without a database section.
        Exactly one per environment: the database steps run once per environment, there."""
        spec = self.app.database
        if spec is None:
            return None
        found = [h for h in self.environment(customer, environment).hosts if self.is_database_host(h)]
        inventory = f"inventories/{customer}/hosts.yml"
        if not found:
            raise BadInput(Problem(inventory, f"environment {environment!r} has no host in the group "
                                              f"{spec.server_group!r} (golive.yml database.server_group): golive "
                                              f"runs the database steps there"))
        if len(found) > 1:
            names = ", ".join(h.name for h in found)
            raise BadInput(Problem(inventory, f"environment {environment!r} has {len(found)} hosts in the group "
                                              f"{spec.server_group!r} ({names}): the database steps run once per "
                                              f"environment, on one host"))
        return found[0]

    def database_connection(self, host: Host) -> DatabaseConnection:
        """database.connection rendered with the database host's variables."""
        spec = self.app.database
        assert spec is not None
        values = {key: self.render_string(spec.template(key), host, "", f"database.connection.{key}").strip()
                  for key in CONNECTION_KEYS}
        try:
            port = int(values["port"])
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise BadInput(Problem(f"{self.app.source} database.connection.port",
                                   f"renders to {values['port']!r} for host {host.name}, not a port number"))
        for key in ("host", "name", "user", "password"):
            if not values[key]:
                raise BadInput(Problem(f"{self.app.source} database.connection.{key}",
                                       f"renders to nothing for host {host.name}"))
        self.redactor.add([values["password"]])
        return DatabaseConnection(host=values["host"], port=port, name=values["name"], user=values["user"],
                                  password=values["password"])

    def render(self, host: Host, version: str) -> RenderedConfig:
        """The host's config files; a variable that breaks the schema (a port that is not a number)
        is refused here, so render, plan and deploy stop before a host is touched, like validate."""
        from golive.core.schema import check_host_vars

        problems = check_host_vars(self.app, host)
        if problems:
            raise BadInput(problems)
        return self.renderer.render(host, version)

    def render_string(self, text: str, host: Host, version: str = "", what: str = "") -> str:
        return self.renderer.render_string(text, host, version, what)

    def template_context(self, host: Host, version: str, *, variant: str = "") -> dict[str, Any]:
        """The variables the host's templates see (templated values resolved)."""
        return self._renderer(variant).context(host, version)

    def render_variant(self, host: Host, version: str, variant: str) -> RenderedConfig:
        """The config of a stand-in for a host (drift's host as another environment would set it), with
        a renderer of its own: renderers cache by host name, and a stand-in has its host's name. The
        schema check is its real host's."""
        return self._renderer(variant).render(host, version)

    def _renderer(self, variant: str) -> Renderer:
        if not variant:
            return self.renderer
        if variant not in self._variants:
            self._variants[variant] = Renderer(self.root, self.app)
        return self._variants[variant]

    def template_uses(self, customer: str) -> dict[str, frozenset[str]]:
        """Which variables each config template reads (Jinja2's own analysis); a template that does not
        parse reads nothing here (rendering reports it)."""
        import jinja2
        import jinja2.meta

        env = self.renderer.environment(customer)
        uses = {}
        for spec in self.app.templates:
            try:
                source, _, _ = env.loader.get_source(env, spec.src)
                uses[spec.dest] = frozenset(jinja2.meta.find_undeclared_variables(env.parse(source)))
            except (jinja2.TemplateError, OSError, UnicodeDecodeError):
                uses[spec.dest] = frozenset()
        return uses

    def artifact_files(self, version: str) -> tuple[str | None, dict[str, dict[str, Any]] | None]:
        """(sha256, file list) of the release artifact of `version` in the store, read once per version:
        path -> {sha256, executable} or {link}. (None, None) when the store does not have it."""
        if version not in self._artifact_files:
            try:
                artifact = self.artifact(version)
            except BadInput:
                self._artifact_files[version] = (None, None)
            else:
                self._artifact_files[version] = (artifact.sha256, self._read_artifact_files(artifact.path))
        return self._artifact_files[version]

    def _read_artifact_files(self, path: str) -> dict[str, dict[str, Any]] | None:
        skipped = {"config", *self.app.shared}
        files: dict[str, dict[str, Any]] = {}
        try:
            with tarfile.open(path, "r:*") as archive:
                for member in archive.getmembers():
                    parts = [p for p in member.name.split("/") if p not in ("", ".")]
                    if not parts or parts[0] in skipped or "__pycache__" in parts or member.isdir():
                        continue
                    name = "/".join(parts)
                    if member.issym():
                        files[name] = {"link": member.linkname}
                    elif member.isfile() or member.islnk():
                        handle = archive.extractfile(member)
                        digest = hashlib.sha256(handle.read() if handle else b"").hexdigest()
                        files[name] = {"sha256": digest, "executable": bool(member.mode & 0o100)}
        except (tarfile.TarError, OSError):
            return None
        return files

    @property
    def store(self) -> Path:
        return (self.root / self.app.store.path).resolve()

    def artifact(self, version: str) -> Artifact:
        """The release artifact, its checksum file read and the artifact verified against it."""
        if not VERSION_PATTERN.match(version):
            raise BadInput(f"release version {version!r} is not a valid version (letters, digits, . _ + -)")
        name = self.app.store.artifact_name(self.app.name, version)
        path = self.store / name
        shown = os.path.relpath(path, self.root)
        if not path.is_file():
            available = sorted(p.name for p in self.store.glob("*.sha256")) if self.store.is_dir() else []
            hint = f" (the store has: {', '.join(a.removesuffix('.sha256') for a in available)})" if available else ""
            raise BadInput(f"release {version}: artifact {shown} not found{hint}; "
                           f"build it with scripts/build-release {version}")
        sha_path = path.with_name(name + ".sha256")
        if not sha_path.is_file():
            raise BadInput(f"release {version}: checksum file {shown}.sha256 is missing")
        expected = parse_sha256_file(sha_path.read_text(errors="replace"), name)
        if expected is None:
            raise BadInput(Problem(f"{shown}.sha256", f"malformed checksum file: expected '<64 hex digits>  {name}'"))
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected:
            raise BadInput(Problem(shown, f"checksum mismatch: the file hashes to {digest.hexdigest()[:16]}..., "
                                          f"{name}.sha256 says {expected[:16]}..."))
        return Artifact(version=version, name=name, path=str(path), sha256=expected, size=path.stat().st_size)
