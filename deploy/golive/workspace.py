"""A workspace on disk: the application definition, the customers' inventories, templates and
the release store. Everything that reads the workspace goes through here."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Iterable
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

from golive.adapters.appdef import load_app_definition
from golive.adapters.inventory_cache import CACHE_DIR, InventoryCache
from golive.adapters.render import Renderer
from golive.adapters.vault import (
    INVENTORIES,
    VaultPassword,
    customer_names,
    inventory_versions,
    vault_password_file,
)
from golive.agent.shared import ignored
from golive.core.database import CONNECTION_KEYS, DatabaseConnection
from golive.core.drift import DIRECTORY_MODE, ReleaseTree, release_tree, unpacked_mode
from golive.core.errors import BadInput, Problem
from golive.core.model import AppDefinition, Customer, Environment, Host, name_problem
from golive.core.redact import Redactor
from golive.core.release import VERSION_PATTERN, Artifact, RenderedConfig, parse_sha256_file

VAULT_PASSWORD_ENV = "GOLIVE_VAULT_PASSWORD_FILE"


def limited(hosts: tuple[Host, ...], only: list[str] | None, *, customer: str, environment: str) -> tuple[Host, ...]:
    """The hosts `--host` names (all without it); a name that is not among them is bad input."""
    if not only:
        return hosts
    unknown = [n for n in only if n not in {h.name for h in hosts}]
    if unknown:
        raise BadInput(f"unknown host {', '.join(unknown)} in {customer}/{environment} "
                       f"(known: {', '.join(h.name for h in hosts)})")
    return tuple(h for h in hosts if h.name in only)


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
        # What the user should know but that stops nothing (an undeclared variable): printed once, at the end.
        self.warnings: list[Problem] = []
        self._warned: set[tuple[str, str]] = set()
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
            problem = name_problem(name, "customer")
            if problem:
                where = (f"{INVENTORIES}/ (a directory)" if name in customer_names(self.root)
                         else "the customer named on the command line")
                raise BadInput(Problem(where, problem))
            customer = self.inventory_cache.load(name)
            if customer is None:
                customer = self.inventory.load(self.app, name)
                self.inventory_cache.store(customer)
            self.redactor.add(customer.secret_values)
            self._customers[name] = self._with_routes(customer)
        return self._customers[name]

    @cached_property
    def ssh_resolver(self):  # -> golive.adapters.ssh_options.Resolver
        from golive.adapters.ssh_options import ConfigCache, Resolver

        return Resolver(self.root, self.app.ssh_config, ConfigCache(self.cache_dir))

    def _with_routes(self, customer: Customer) -> Customer:
        """Each host with the route its SSH options give (or why there is none): read afresh every
        run, since an ssh_config file the inventory names may change on its own."""
        resolver = self.ssh_resolver

        def routed(host: Host) -> Host:
            route, problems = resolver.route(host.name, host.connection, host.where)
            return replace(host, connection=replace(host.connection, route=route, route_problems=tuple(problems)))

        environments = tuple(replace(e, hosts=tuple(routed(h) for h in e.hosts)) for e in customer.environments)
        if resolver.cache is not None:
            resolver.cache.save()
        return replace(customer, environments=environments)

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
        return limited(hosts, only, customer=customer, environment=environment)

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
        from golive.core.schema import check_host_vars, undeclared_variables

        problems = check_host_vars(self.app, host)
        if problems:
            raise BadInput(problems)
        if (host.customer, host.name) not in self._warned:
            self._warned.add((host.customer, host.name))
            self.warnings.extend(undeclared_variables(self.app, host))
        return self._noted(self.renderer.render(host, version))

    def _noted(self, config: RenderedConfig) -> RenderedConfig:
        """A secret file's digest is masked like a secret (it would let a dictionary find a weak one)."""
        for f in config.files:
            if f.secret:
                self.redactor.add_digest(f.sha256)
        return config

    def render_string(self, text: str, host: Host, version: str = "", what: str = "") -> str:
        return self.renderer.render_string(text, host, version, what)

    def template_context(self, host: Host, version: str, *, variant: str = "") -> dict[str, Any]:
        """The variables the host's templates see (templated values resolved)."""
        return self._renderer(variant).context(host, version)

    def render_variant(self, host: Host, version: str, variant: str) -> RenderedConfig:
        """The config of a stand-in for a host (drift's host as another environment would set it), with
        a renderer of its own: renderers cache by host name, and a stand-in has its host's name. The
        schema check is its real host's."""
        return self._noted(self._renderer(variant).render(host, version))

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

    def release_tree(self, version: str, config: RenderedConfig, artifact: Artifact | None = None) -> ReleaseTree:
        """What a host's release directory of `version` with this config should hold, entry by entry,
        as either engine leaves it (the one definition drift, deploy and the checks compare with):
        the artifact's entries as unpacked, config/ with the rendered files, the shared links.
        What golive.yml's drift.ignore names is left out. Without the artifact in the store, only
        config/ and the shared links are known."""
        sha, code = self.artifact_files(version, artifact)
        rendered = {f.dest: {"sha256": f.sha256, "size": len(f.content), "mode": f"{f.mode:04o}"} for f in config.files}
        tree = release_tree(code, rendered, self.app.shared, sha)
        patterns = self.app.drift_ignore
        if not patterns:
            return tree
        return replace(tree, entries={p: e for p, e in tree.entries.items() if not ignored(p, patterns)})

    def artifact_files(self, version: str, artifact: Artifact | None = None
                       ) -> tuple[str | None, dict[str, dict[str, Any]] | None]:
        """(sha256, entries) of the release artifact of `version` in the store (or `artifact`, verified
        already), every entry as the host agent unpacks it (path -> {type, mode, sha256, size | link});
        (None, None) when the store does not have it. Read once per version, and remembered on disk
        under its verified sha256."""
        if version not in self._artifact_files:
            try:
                artifact = artifact or self.artifact(version)
            except BadInput:
                self._artifact_files[version] = (None, None)
            else:
                self._artifact_files[version] = (artifact.sha256, self._remembered_entries(artifact))
        return self._artifact_files[version]

    def _remembered_entries(self, artifact: Artifact) -> dict[str, dict[str, Any]] | None:
        # The reader's own code is in the name: a change to how entries are read is never served stale.
        reader = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
        cached = self.cache_dir / "artifact-files" / f"{artifact.sha256}-{reader}.json"
        try:
            return json.loads(cached.read_text())
        except (OSError, ValueError):
            pass
        entries = archive_entries(artifact.path)
        if entries is not None:
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                temporary = cached.with_name(f".{cached.name}.{os.getpid()}")
                temporary.write_text(json.dumps(entries, sort_keys=True))
                os.replace(temporary, cached)
            except OSError:
                pass  # a read-only workspace reads the archive every time
        return entries

    def _remote_artifact(self, version: str, name: str) -> Artifact:
        """Fetched from the remote store into the cache, verified against its published sha256
        (golive.adapters.artifact_store), once: a re-run uses the verified copy."""
        from golive.adapters.artifact_store import fetch, remote_for

        remote = remote_for(self.app.store, self.root, self.app.name, version, name, lambda: self.vault_password)
        self.redactor.add(remote.secrets)
        path = fetch(remote, name, self.cache_dir)
        expected = parse_sha256_file((path.parent / f"{name}.sha256").read_text(), name) or ""
        return Artifact(version=version, name=name, path=str(path), sha256=expected, size=path.stat().st_size)

    @property
    def store(self) -> Path:
        return (self.root / self.app.store.path).resolve()

    def _build_hint(self, version: str) -> str:
        """How this workspace makes an artifact: its own build script when it has one (the example's)."""
        if (self.root / "scripts" / "build-release").is_file():
            return f"build it with scripts/build-release {version}"
        store = os.path.relpath(self.store, self.root)
        return f"make it from the release's files with `golive package DIR --version {version} --out {store}`"

    def artifact(self, version: str) -> Artifact:
        """The release artifact, its checksum file read and the artifact verified against it."""
        if not VERSION_PATTERN.fullmatch(version):
            raise BadInput(f"release version {version!r} is not a valid version (letters, digits, . _ + -)")
        name = self.app.store.artifact_name(self.app.name, version)
        if self.app.store.remote:
            return self._remote_artifact(version, name)
        path = self.store / name
        shown = os.path.relpath(path, self.root)
        if not path.is_file():
            available = sorted(p.name for p in self.store.glob("*.sha256")) if self.store.is_dir() else []
            hint = f" (the store has: {', '.join(a.removesuffix('.sha256') for a in available)})" if available else ""
            raise BadInput(f"release {version}: artifact {shown} not found{hint}; {self._build_hint(version)}")
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


def archive_entries(path: str) -> dict[str, dict[str, Any]] | None:
    """A release archive's entries as the host agent unpacks them (agent/archive.py extract_checked):
    every directory, named or implied, 0755; a file's mode through unpacked_mode; a hardlink the
    content and mode of what it links to (they share an inode); a symlink its target. Nothing is
    left out. None when the archive cannot be read. (The build-time manifest, golive-manifest.json,
    will replace this read: the same entries, written when the artifact is built.)"""
    entries: dict[str, dict[str, Any]] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive.getmembers():
                parts = [p for p in member.name.split("/") if p not in ("", ".")]
                if not parts:
                    continue
                for depth in range(1, len(parts)):
                    entries.setdefault("/".join(parts[:depth]), {"type": "dir", "mode": DIRECTORY_MODE})
                name = "/".join(parts)
                if member.isdir():
                    entries[name] = {"type": "dir", "mode": DIRECTORY_MODE}
                elif member.issym():
                    entries[name] = {"type": "link", "link": member.linkname}
                elif member.islnk():
                    target = "/".join(p for p in member.linkname.split("/") if p not in ("", "."))
                    entries[name] = dict(entries.get(target) or {"type": "file"})
                elif member.isfile():
                    handle = archive.extractfile(member)
                    digest = hashlib.sha256()
                    while handle is not None and (block := handle.read(1 << 20)):
                        digest.update(block)
                    entries[name] = {"type": "file", "mode": unpacked_mode(member.mode), "size": member.size,
                                     "sha256": digest.hexdigest()}
                else:
                    entries[name] = {"type": "other"}  # the host agent refuses it: never unpacked
    except (tarfile.TarError, OSError, EOFError):
        return None
    return entries
