"""Ansible-format inventories, loaded with ansible-core's own inventory, variable and vault code,
so variable precedence is Ansible's by construction."""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from golive.adapters.ansible_env import import_ansible
from golive.adapters.vault import INVENTORIES, customer_names
from golive.core.errors import BadInput, Problem
from golive.core.model import AppDefinition, Connection, Customer, Environment, Host, name_problem
from golive.core.redact import leaf_texts

VAULT_HEADER = b"$ANSIBLE_VAULT;"


class AnsibleInventory:
    """One process-wide ansible-core loader for a workspace (vault secrets are process-wide too)."""

    def __init__(self, workspace: Path, password: bytes | None) -> None:
        import_ansible(workspace)
        from ansible.parsing.dataloader import DataLoader
        from ansible.parsing.vault import VaultSecret, VaultSecretsContext

        self.workspace = workspace
        self.loader = DataLoader()
        self.loader.set_basedir(str(workspace))
        secrets = [("default", VaultSecret(password))] if password else []
        self.loader.set_vault_secrets(secrets)
        # ansible-core 2.19 decrypts vault values lazily through a process-wide context that can
        # be initialised only once: keep one and refresh its secrets in place.
        context = VaultSecretsContext.current(optional=True)
        if context is None:
            VaultSecretsContext.initialize(VaultSecretsContext(list(secrets)))
        else:
            context.secrets[:] = secrets
        self._encrypted_files: dict[str, bool] = {}
        self._encrypted_names: dict[str, frozenset[str]] = {}
        self.ansible_config = ansible_config()

    def load(self, app: AppDefinition, customer: str) -> Customer:
        from ansible.errors import AnsibleError
        from ansible.inventory.manager import InventoryManager
        from ansible.vars.manager import VariableManager

        inventory_dir = self.workspace / INVENTORIES / customer
        if not inventory_dir.is_dir():
            known = ", ".join(customer_names(self.workspace)) or "none"
            raise BadInput(f"unknown customer {customer!r}: no {INVENTORIES}/{customer}/ (known: {known})")
        scan_inventory(inventory_dir, self.workspace)
        parse_failures: list[tuple[str, BaseException]] = []
        try:
            with _parse_failures_collected(parse_failures):
                inventory = InventoryManager(loader=self.loader, sources=[str(inventory_dir)])
            variables = VariableManager(loader=self.loader, inventory=inventory)
            hosts = [
                self._host(app, customer, host, variables.get_vars(host=host, include_hostvars=False, stage="all"))
                for host in inventory.get_hosts()
            ]
        except AnsibleError as error:
            problem = _ansible_problem(_parse_cause(error, parse_failures), self.workspace)
            if not problem.where and parse_failures:  # e.g. a group cycle: Ansible names only the source
                problem = Problem(_failed_source(parse_failures, self.workspace), problem.message)
            raise BadInput(problem) from None
        problems = [p for h in hosts if isinstance(h, Problem) for p in [h]]
        if problems:
            raise BadInput(problems)
        environments = tuple(
            Environment(spec.name, customer, tuple(h for h in hosts if h.environment == spec.name))
            for spec in app.environments
        )
        return Customer(customer, str(inventory_dir), environments)

    def as_environment(self, app: AppDefinition, customer: Customer, hosts: Iterable[Host],
                       environment: str) -> dict[str, Host | Problem]:
        """Each host as `environment` would configure it (or the Problem that stops that), computed
        by ansible-core itself.

        Drift asks "does production differ from staging in anything but the declared variables?".
        Hosts of the two environments are rarely twins (a plant host with its own host_vars, a
        gateway role that only one staging host has), so comparing a production host with some
        staging host would report those as drift. Instead each host is moved, in a private copy of
        the inventory, out of its environment's groups (the environment group and every group below
        it) and into `environment`'s group; Ansible then gives its variables with the same
        precedence rules as always. What differs between the two sets is exactly what the
        environment contributes. The host keeps its host_vars and its cross-environment groups, so
        those never count as environment drift."""
        from ansible.errors import AnsibleError
        from ansible.inventory.manager import InventoryManager
        from ansible.vars.manager import VariableManager

        try:
            inventory = InventoryManager(loader=self.loader, sources=[customer.inventory_dir])
            destination = inventory.groups.get(environment)
            if destination is None:
                raise BadInput(f"environment group {environment!r} is not in the inventory of {customer.name!r}")
            moved = []
            for host in hosts:
                ansible_host = inventory.get_host(host.name)
                if ansible_host is None:
                    continue
                for group in list(ansible_host.get_groups()):
                    below_own = host.environment in {g.name for g in group.get_ancestors()}
                    if group.name == host.environment or below_own:
                        group.remove_host(ansible_host)
                destination.add_host(ansible_host)
                moved.append(ansible_host)
            variables = VariableManager(loader=self.loader, inventory=inventory)
            result: dict[str, Host | Problem] = {}
            for ansible_host in moved:
                raw = variables.get_vars(host=ansible_host, include_hostvars=False, stage="all")
                # The same conversion as the workspace's own hosts: vault values decrypted and noted.
                result[ansible_host.name] = self._host(app, customer.name, ansible_host, raw)
        except AnsibleError as error:
            raise BadInput(Problem(customer.inventory_dir, f"cannot evaluate the inventory: {error}")) from None
        return result

    def _host(self, app: AppDefinition, customer: str, host: Any, raw: dict[str, Any]) -> Host | Problem:
        from ansible import constants as C

        for internal in C.INTERNAL_STATIC_VARS:
            raw.pop(internal, None)
        problem = name_problem(host.name, "host")
        if problem:  # it names --out directories, pytest ids and what commands see as GOLIVE_HOST
            return Problem(f"{INVENTORIES}/{customer}/hosts.yml", problem)
        groups = tuple(sorted(g.name for g in host.get_groups() if g.name != "all"))
        env_names = [e.name for e in app.environments if e.name in groups]
        if len(env_names) != 1:
            names = ", ".join(e.name for e in app.environments)
            where = f"{INVENTORIES}/{customer}/hosts.yml"
            if not env_names:
                return Problem(where, f"host {host.name} is in no environment group ({names})")
            return Problem(where, f"host {host.name} is in several environment groups: {', '.join(env_names)}")
        secrets: set[str] = set()
        vaulted: set[str] = set()
        origins: dict[str, str] = {}
        plain = {key: self._plain(value, secrets, vaulted, key) for key, value in raw.items()}
        # Every value that came from a vault is secret, whatever its type and however deep: inline
        # `!vault` values (noted by _plain) and every variable of a vault-encrypted vars file; so is
        # every value of a variable the schema marks `secret: true`.
        secret_paths = set(vaulted)
        for key, value in raw.items():
            origin = _origin(value, self.workspace)
            if origin:
                origins[key] = origin
            # booleans and nulls carry no origin: a name an encrypted file sets counts as secret
            untagged = (isinstance(value, bool) or value is None) and key in self._encrypted_keys(customer)
            if key in app.secret_var_names or untagged or (origin and self._from_encrypted_file(value)):
                secret_paths.add(key)
                secrets.update(leaf_texts(plain[key]))
        return Host(
            name=host.name,
            customer=customer,
            environment=env_names[0],
            groups=groups,
            vars=MappingProxyType(plain),
            connection=connection_for(host.name, plain, self.ansible_config),
            secret_values=frozenset(secrets),
            vault_paths=frozenset(vaulted),
            var_origins=MappingProxyType(origins),
            secret_paths=frozenset(secret_paths),
        )

    def _plain(self, value: Any, secrets: set[str], vaulted: set[str], path: str) -> Any:
        """Ansible's tagged values as plain Python, decrypting vault values and noting them (and, in
        `vaulted`, the path of each inline `!vault` value)."""
        from ansible.errors import AnsibleError
        from ansible.parsing.vault import EncryptedString

        if isinstance(value, EncryptedString):
            try:
                text = str(value._decrypt())
            except AnsibleError:
                where = _origin(value, self.workspace) or "a vault value"
                raise BadInput(f"{where}: cannot decrypt the vault value (wrong or missing vault password)") from None
            secrets.add(text)
            vaulted.add(path)
            return text
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, dict):
            return {str(k): self._plain(v, secrets, vaulted, f"{path}.{k}") for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._plain(v, secrets, vaulted, f"{path}[{i}]") for i, v in enumerate(value)]
        for plain_type in (str, int, float):
            if isinstance(value, plain_type):
                return plain_type(value)
        if isinstance(value, datetime):  # YAML timestamps: plain values, as Ansible hands them over
            return datetime.fromisoformat(value.isoformat())
        if isinstance(value, date):
            return date.fromisoformat(value.isoformat())
        return value

    def _encrypted_keys(self, customer: str) -> frozenset[str]:
        """The variable names the customer's vault-encrypted vars files set (Ansible has loaded and
        decrypted them already: its loader's cache answers)."""
        if customer not in self._encrypted_names:
            names: set[str] = set()
            for path in sorted((self.workspace / INVENTORIES / customer).rglob("*")):
                if path.is_file() and path.parent.name != INVENTORIES and self._encrypted(str(path)):
                    try:
                        data = self.loader.load_from_file(str(path), cache="all")
                    except Exception:  # Ansible reports a file it cannot read when it loads the inventory
                        continue
                    if isinstance(data, dict):
                        names.update(str(k) for k in data)
            self._encrypted_names[customer] = frozenset(names)
        return self._encrypted_names[customer]

    def _encrypted(self, path: str) -> bool:
        if path not in self._encrypted_files:
            try:
                with open(path, "rb") as handle:
                    self._encrypted_files[path] = handle.read(len(VAULT_HEADER)) == VAULT_HEADER
            except OSError:
                self._encrypted_files[path] = False
        return self._encrypted_files[path]

    def _from_encrypted_file(self, value: Any) -> bool:
        from ansible._internal._datatag._tags import Origin

        origin = Origin.get_tag(value)
        return bool(origin is not None and origin.path and self._encrypted(origin.path))


def scan_inventory(inventory_dir: Path, workspace: Path) -> None:
    """Refuse an inventory file over golive's YAML bounds (size, nesting, alias expansion) before
    ansible-core reads it: its loader expands aliases into copies, so an alias bomb would never
    finish. Only composed, never constructed; text that is not YAML (an INI inventory) is left to
    ansible-core to parse and report. A vault-encrypted file cannot be scanned: it takes the vault
    password to plant one."""
    import yaml

    from golive.adapters.inventory_cache import inventory_files
    from golive.adapters.yamlfile import YamlTooLarge, scan_bounds

    problems = []
    for _, path, _ in inventory_files(inventory_dir):
        try:
            with open(path, "rb") as handle:
                head = handle.read(len(VAULT_HEADER))
                if head == VAULT_HEADER:
                    continue
                data = head + handle.read()
            scan_bounds(data.decode("utf-8"))
        except YamlTooLarge as error:
            problems.append(Problem(_relative(str(path), workspace), f"refused: {error}"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # ansible-core reads (or skips) it and says what is wrong
    if problems:
        raise BadInput(problems)


def _relative(path: str, workspace: Path) -> str:
    try:
        return str(Path(path).relative_to(workspace))
    except ValueError:
        return path


def _origin(value: Any, workspace: Path) -> str | None:
    from ansible._internal._datatag._tags import Origin

    origin = Origin.get_tag(value)
    if origin is None or not origin.path:
        return None
    path = _relative(origin.path, workspace)
    return f"{path}:{origin.line_num}" if origin.line_num else path


@contextlib.contextmanager
def _parse_failures_collected(failures: list[tuple[str, BaseException]]):
    """While inventory sources are parsed, keep each plugin's failure instead of letting Ansible
    print it as a multi-line warning: golive reports one line, from the plugin that fits the file."""
    from ansible.utils.display import Display

    original = Display.error_as_warning

    def collect(self, msg, exception, *args, **kwargs):
        failures.append((str(msg), exception))

    Display.error_as_warning = collect
    try:
        yield
    finally:
        Display.error_as_warning = original


def _parse_cause(error: Exception, failures: list[tuple[str, BaseException]]) -> Exception:
    """For an inventory file no plugin could parse, the YAML plugin's reason (hosts.yml is YAML)
    rather than Ansible's summary or the INI plugin's complaint about YAML syntax."""
    if not failures or "failed to parse inventory source" not in str(error):
        return error
    preferred = [exc for msg, exc in failures if "'yaml'" in msg]
    cause = (preferred or [failures[0][1]])[0]
    return cause if isinstance(cause, Exception) else error


def _failed_source(failures: list[tuple[str, BaseException]], workspace: Path) -> str:
    """The inventory file Ansible failed to parse, from its "<inventory plugin .. with source '..'>"."""
    import re

    for _, exception in failures:
        found = re.search(r"with source '([^']+)'", str(getattr(getattr(exception, "obj", None), "description", "")))
        if found:
            return _relative(found.group(1), workspace)
    return ""


def _ansible_problem(error: Exception, workspace: Path) -> Problem:
    """Ansible's error as one line naming the file and line, without its internals."""
    from ansible._internal._datatag._tags import Origin

    message = str(getattr(error, "message", None) or error).split("\n")[0].strip()
    where = ""
    cause: BaseException | None = error
    while cause is not None and not where:
        origin = getattr(cause, "obj", None)
        tag = origin if isinstance(origin, Origin) else Origin.get_tag(origin) if origin is not None else None
        if tag is not None and tag.path:
            where = _relative(tag.path, workspace) + (f":{tag.line_num}" if tag.line_num else "")
        cause = cause.__cause__ or cause.__context__
    # Ansible repeats the cause after a colon ("X: X"); say it once.
    head, _, tail = message.partition(": ")
    if tail and tail.startswith(head):
        message = tail
    return Problem(where, message.replace(str(workspace) + "/", ""))


# Ansible's ssh connection options that decide how a host is reached, as (variables, environment
# variables, ansible.cfg entries, default): ansible-core 2.19's connection/ssh.py documentation. Of
# several variables (or environment variables) set, the last in the list wins, as in Ansible.
ANSIBLE_SSH_OPTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...], Any]] = {
    "host": (("ansible_host", "ansible_ssh_host"), (), (), None),
    "port": (("ansible_port", "ansible_ssh_port"), ("ANSIBLE_REMOTE_PORT",), (("defaults", "remote_port"),), None),
    "remote_user": (("ansible_user", "ansible_ssh_user"), ("ANSIBLE_REMOTE_USER",), (("defaults", "remote_user"),),
                    None),
    "private_key_file": (("ansible_private_key_file", "ansible_ssh_private_key_file"), ("ANSIBLE_PRIVATE_KEY_FILE",),
                         (("defaults", "private_key_file"),), None),
    "ssh_args": (("ansible_ssh_args",), ("ANSIBLE_SSH_ARGS",), (("ssh_connection", "ssh_args"),),
                 "-C -o ControlMaster=auto -o ControlPersist=60s"),
    "ssh_common_args": (("ansible_ssh_common_args",), ("ANSIBLE_SSH_COMMON_ARGS",),
                        (("ssh_connection", "ssh_common_args"),), ""),
    "ssh_extra_args": (("ansible_ssh_extra_args",), ("ANSIBLE_SSH_EXTRA_ARGS",),
                       (("ssh_connection", "ssh_extra_args"),), ""),
    "timeout": (("ansible_ssh_timeout",), ("ANSIBLE_TIMEOUT", "ANSIBLE_SSH_TIMEOUT"),
                (("defaults", "timeout"), ("ssh_connection", "timeout")), 10),
    "host_key_checking": (("ansible_host_key_checking", "ansible_ssh_host_key_checking"),
                          ("ANSIBLE_HOST_KEY_CHECKING", "ANSIBLE_SSH_HOST_KEY_CHECKING"),
                          (("defaults", "host_key_checking"), ("ssh_connection", "host_key_checking")), True),
    "sftp_extra_args": (("ansible_sftp_extra_args",), ("ANSIBLE_SFTP_EXTRA_ARGS",),
                        (("ssh_connection", "sftp_extra_args"),), ""),
    "scp_extra_args": (("ansible_scp_extra_args",), ("ANSIBLE_SCP_EXTRA_ARGS",),
                       (("ssh_connection", "scp_extra_args"),), ""),
}
# Connection variables golive cannot honour for either engine: the host is refused, naming them.
REFUSED_VARIABLES = {
    "ansible_password": "golive authenticates with SSH keys only; set ansible_ssh_private_key_file",
    "ansible_ssh_pass": "golive authenticates with SSH keys only; set ansible_ssh_private_key_file",
    "ansible_ssh_password": "golive authenticates with SSH keys only; set ansible_ssh_private_key_file",
    "ansible_private_key": "a key in a variable is not supported; name its file in ansible_ssh_private_key_file",
    "ansible_ssh_private_key": "a key in a variable is not supported; name its file in ansible_ssh_private_key_file",
    "ansible_private_key_passphrase": "an encrypted key is not supported (golive never prompts)",
    "ansible_ssh_private_key_passphrase": "an encrypted key is not supported (golive never prompts)",
    "ansible_ssh_pkcs11_provider": "PKCS#11 keys are not supported",
    "ansible_sshpass_prompt": "password authentication is not supported",
    "ansible_ssh_password_mechanism": "password authentication is not supported",
}
SSH_CONNECTIONS = ("ssh", "smart")
# sftp/scp options that only shape the Ansible engine's file transfers (a bandwidth limit, say).
TRANSFER_FLAGS = {"-l", "-B", "-R", "-C", "-q", "-v"}


def ansible_config() -> tuple[str, Any]:
    """The ansible.cfg ansible-core found (its path) and its settings, parsed as ansible-core does."""
    import configparser

    from ansible import constants as C

    path = getattr(C, "CONFIG_FILE", None) or ""
    parser = configparser.ConfigParser(inline_comment_prefixes=(";",))
    if path:
        with contextlib.suppress(configparser.Error):  # ansible-core has said what is wrong with it
            parser.read(path)
    return path, parser


def _ansible_option(option: str, variables: dict[str, Any], config: tuple[str, Any]) -> tuple[Any, str]:
    """(value, where it came from): a variable, else an environment variable, else ansible.cfg,
    else Ansible's default - the precedence ansible-core's config manager applies."""
    names, env_names, ini_entries, default = ANSIBLE_SSH_OPTIONS[option]
    found = [(variables[n], n) for n in names if variables.get(n) is not None]
    if found:
        return found[-1]
    found = [(os.environ[n], n) for n in env_names if n in os.environ]
    if found:
        return found[-1]
    path, parser = config
    found = [(parser.get(section, key), f"{path} [{section}] {key}") for section, key in ini_entries
             if parser.has_option(section, key)]
    if found:
        return found[-1]
    return default, "Ansible's default"


def _split(value: Any) -> list[str]:
    """ansible-core's split of an ssh argument string (connection/ssh.py _split_ssh_args)."""
    return [a.strip() for a in shlex.split(str(value or "")) if a.strip()]


def _bool(value: Any) -> bool:
    return str(value).strip().lower() not in ("false", "no", "0", "off", "n", "f")


def connection_for(name: str, variables: dict[str, Any], config: tuple[str, Any] = ("", None)) -> Connection:
    """Ansible's connection variables, mapped once for pyinfra, Ansible and Testinfra: the OpenSSH
    command line Ansible's ssh connection builds for the host (connection/ssh.py _build_command, in
    its order), each argument with where it came from; golive.adapters.ssh_options reads it."""
    if config[1] is None:
        import configparser

        config = ("", configparser.ConfigParser())
    args: list[str] = []
    sources: list[str] = []
    refused: list[tuple[str, str]] = []

    def add(tokens: Iterable[str], source: str) -> None:
        for token in tokens:
            args.append(token)
            sources.append(source)

    connection_type = variables.get("ansible_connection")
    if connection_type is not None and str(connection_type) not in SSH_CONNECTIONS:
        refused.append(("ansible_connection", f"ansible_connection: {connection_type}: golive reaches hosts over "
                                              f"SSH only (both engines); remove it or set it to ssh"))
    executable = variables.get("ansible_ssh_executable") or os.environ.get("ANSIBLE_SSH_EXECUTABLE")
    if executable and os.path.basename(str(executable)) != "ssh":
        refused.append(("ansible_ssh_executable", f"ansible_ssh_executable: {executable}: golive runs OpenSSH's "
                                                  f"own ssh for the Ansible engine"))
    for variable, why in REFUSED_VARIABLES.items():
        if variables.get(variable) not in (None, ""):
            refused.append((variable, f"{variable}: {why}"))
    for option in ("sftp_extra_args", "scp_extra_args"):
        value, source = _ansible_option(option, variables, config)
        tokens = _split(value)
        for index, token in enumerate(tokens):
            previous = tokens[index - 1] if index else ""
            if token in TRANSFER_FLAGS or (previous in ("-l", "-B", "-R") and token.isdigit()):
                continue
            allowed = ", ".join(sorted(TRANSFER_FLAGS))
            refused.append((source, f"{source}: {value}: {token!r} is not supported there: only {allowed} (they "
                                    f"shape the Ansible engine's file transfers); put connection options in "
                                    f"ansible_ssh_common_args"))
            break
    ssh_args, source = _ansible_option("ssh_args", variables, config)
    add(_split(ssh_args), source)
    checking, source = _ansible_option("host_key_checking", variables, config)
    if not _bool(checking):
        add(["-o", "StrictHostKeyChecking=no"], source)
    port, port_source = _ansible_option("port", variables, config)
    if port is not None:
        add(["-o", f"Port={port}"], port_source)
    key_file, key_source = _ansible_option("private_key_file", variables, config)
    if key_file:
        add(["-o", f'IdentityFile="{os.path.expanduser(str(key_file))}"'], key_source)
    user, user_source = _ansible_option("remote_user", variables, config)
    if user:
        add(["-o", f'User="{user}"'], user_source)
    timeout, source = _ansible_option("timeout", variables, config)
    add(["-o", f"ConnectTimeout={timeout}"], source)
    for option in ("ssh_common_args", "ssh_extra_args"):
        value, source = _ansible_option(option, variables, config)
        add(_split(value), source)

    host, _ = _ansible_option("host", variables, config)
    known = next((a.split("=", 1)[1] for a in args if a.lower().startswith("userknownhostsfile=")), None)
    return Connection(
        address=str(host or name),
        port=int(port) if str(port or "").isdigit() else 22,
        user=str(user or getpass.getuser()),
        key_file=str(key_file) if key_file else None,
        known_hosts_file=known.split()[0] if known else str(Path("~/.ssh/known_hosts").expanduser()),
        python=str(variables.get("ansible_python_interpreter") or "python3"),
        ssh_args=tuple(args),
        ssh_arg_sources=tuple(sources),
        refused=tuple(refused),
    )
