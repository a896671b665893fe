"""How golive reaches a host over SSH: the options Ansible's ssh connection passes to OpenSSH for it,
read the way OpenSSH reads them, into a Route (golive.core.model) that every engine follows.

Both engines must reach the same host the same way. So golive reads the host's connection as
OpenSSH would when Ansible runs it: the options on the command line first (each keyword's first
value wins), then the ssh_config file named with `-F` (in the inventory's ssh args, in ansible.cfg's
ssh_args, or as golive.yml's `connection.ssh_config`) - never ~/.ssh/config or /etc/ssh/ssh_config
unless named, since the operator's own files must not decide where production deploys go. A
config file is evaluated by OpenSSH itself (`ssh -G`, which prints the configuration it would use:
Host and Match blocks, HostName aliases, Include, tokens), cached in .golive-cache/.

What golive does with them:
- HostName, Port, User, IdentityFile (-i, ansible_ssh_private_key_file), UserKnownHostsFile,
  GlobalKnownHostsFile, HostKeyAlias, ConnectTimeout, ServerAliveInterval: used.
- ProxyJump (-J) and ProxyCommand: the route. OpenSSH gives a jump host none of the command
  line's options; golive gives every jump host the command line's trust options (its known_hosts
  files, strict checking, its keys) - a jump host's key is verified like the host's - and passes
  exactly that to OpenSSH for the Ansible engine (as an explicit ProxyCommand).
- StrictHostKeyChecking: golive verifies every host key against known_hosts, always; `yes` (or
  unset) is accepted, anything weaker is refused.
- Options that change nothing golive does (connection sharing, compression, keepalives, logging,
  authentication methods golive does not use anyway) are passed to OpenSSH as they are.
- Anything else is refused, naming the option and where it was set: never dropped silently.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golive.core.errors import Problem
from golive.core.model import Connection, Hop, Route

# Keywords golive uses itself (lower case, as OpenSSH prints them with `ssh -G`).
USED = frozenset({"hostname", "port", "user", "identityfile", "userknownhostsfile", "globalknownhostsfile",
                  "stricthostkeychecking", "hostkeyalias", "proxyjump", "proxycommand", "connecttimeout",
                  "serveraliveinterval", "identitiesonly", "batchmode"})
# Keywords that change nothing golive does: OpenSSH gets them as they are (the Ansible engine).
PASSED = frozenset({"controlmaster", "controlpath", "controlpersist", "compression", "serveralivecountmax",
                    "tcpkeepalive", "connectionattempts", "loglevel", "hashknownhosts", "checkhostip",
                    "updatehostkeys", "visualhostkey", "numberofpasswordprompts", "escapechar",
                    "ipqos", "rekeylimit", "fingerprinthash", "logverbose", "syslogfacility"})
# Keywords accepted with the values that match what golive does (publickey authentication only,
# nothing forwarded); any other value is refused.
ONLY = {
    "passwordauthentication": {"no"},
    "kbdinteractiveauthentication": {"no"},
    "challengeresponseauthentication": {"no"},
    "gssapiauthentication": {"no"},
    "hostbasedauthentication": {"no"},
    "pubkeyauthentication": {"yes", "true"},
    "forwardagent": {"no"},
    "forwardx11": {"no"},
    "forwardx11trusted": {"no", "yes"},
    "clearallforwardings": {"no", "yes"},
    "exitonforwardfailure": {"no", "yes"},
    "addressfamily": {"any"},
    "requesttty": {"auto", "no", "yes", "force"},  # Ansible asks for a tty for become; golive needs none
    "stdinnull": {"no"},
    "sessiontype": {"default"},
    "forkafterauthentication": {"no"},
    "permitlocalcommand": {"no"},
    "verifyhostkeydns": {"no", "false"},
    "enablesshkeysign": {"no"},
    "canonicalizehostname": {"no", "false"},
    "proxyusefdpass": {"no"},
}
PASSED_ONLY = PASSED | {"preferredauthentications"}
STRICT = {"yes", "true", "ask"}  # ask: OpenSSH's default; golive never asks and the Ansible engine says yes
MULTI_VALUED = {"userknownhostsfile", "globalknownhostsfile"}
# Command-line flags: those taking an argument golive reads, harmless ones, and the rest (refused).
FLAG_OPTIONS = {"F": "-F", "J": "proxyjump", "i": "identityfile", "l": "user", "p": "port", "o": "-o"}
HARMLESS_FLAGS = {"C": "compression", "q": "loglevel", "v": "loglevel", "T": "requesttty", "n": "stdinnull",
                  "x": "forwardx11", "a": "forwardagent", "k": "gssapidelegatecredentials", "y": "logverbose"}
FLAGS_WITH_ARGUMENT = set("bBcDEeILmOPQRSWw")
TOKENS = re.compile(r"%(.)")
MAX_JUMPS = 8
DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
CONFIG_SOURCE = "golive.yml connection.ssh_config"


@dataclass
class Declared:
    """The command line's options, as OpenSSH reads them: each keyword's first value, identity
    files accumulated, the last -F."""

    options: dict[str, tuple[str, str]] = field(default_factory=dict)  # keyword -> (value, source)
    identity_files: list[tuple[str, str]] = field(default_factory=list)
    config: tuple[str, str] | None = None  # (path, source)
    passed: list[str] = field(default_factory=list)  # options only OpenSSH uses, given to it as they are
    passed_keywords: set[str] = field(default_factory=set)  # ... and the keywords they set

    def value(self, keyword: str) -> str | None:
        found = self.options.get(keyword)
        return found[0] if found else None


class Refused(Exception):
    """An option golive cannot honour: (source, message)."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(message)
        self.source = source
        self.message = message


# -- the command line -------------------------------------------------------------------------------

def split_option(text: str) -> tuple[str, str]:
    """`Key=Value` or `Key Value` -> (lower-case keyword, raw value), as OpenSSH splits an -o."""
    match = re.match(r"\s*([A-Za-z0-9]+)\s*(?:=\s*|\s+)?(.*)$", text, re.DOTALL)
    if not match or not match.group(1):
        raise ValueError(text)
    return match.group(1).lower(), match.group(2).strip()


def option_words(keyword: str, raw: str) -> list[str]:
    """An option's value as OpenSSH tokenises it (quotes removed); ProxyCommand is the raw rest."""
    if keyword == "proxycommand":
        return [raw]
    try:
        words = shlex.split(raw)
    except ValueError:
        words = raw.split()
    return words if keyword in MULTI_VALUED else words[:1]


def parse_args(args: Iterable[str], sources: Iterable[str]) -> Declared:
    """The command line's options; raises Refused for an option golive does not support."""
    declared = Declared()
    tokens = list(zip(args, sources, strict=True))
    index = 0
    while index < len(tokens):
        token, source = tokens[index]
        index += 1
        if not token.startswith("-") or token == "-":
            raise Refused(source, f"{token!r} is not an ssh option (a host name or command does not belong in the "
                                  f"ssh arguments)")
        letters = token[1:]
        while letters:
            flag, letters = letters[0], letters[1:]
            if flag in FLAG_OPTIONS:
                if letters:
                    argument, letters = letters, ""
                elif index < len(tokens):
                    argument, index = tokens[index][0], index + 1
                else:
                    raise Refused(source, f"-{flag} needs a value")
                _take(declared, FLAG_OPTIONS[flag], argument, source, f"-{flag} {argument}")
            elif flag in HARMLESS_FLAGS:
                declared.passed.append(f"-{flag}")
                declared.passed_keywords.add(HARMLESS_FLAGS[flag])
            else:
                shown = f"-{flag}"
                if flag in FLAGS_WITH_ARGUMENT:
                    shown += f" {letters or (tokens[index][0] if index < len(tokens) else '')}".rstrip()
                raise Refused(source, f"the ssh option {shown} is not supported by golive (both engines must reach "
                                      f"the host the same way); remove it")
    return declared


def _take(declared: Declared, kind: str, argument: str, source: str, shown: str) -> None:
    if kind == "-F":
        declared.config = (argument, source)
        return
    if kind == "-o":
        try:
            keyword, raw = split_option(argument)
        except ValueError:
            raise Refused(source, f"-o {argument!r} is not an ssh option") from None
        shown = f"-o {argument}"
    else:
        keyword, raw = kind, argument
    check_keyword(keyword, raw, source, shown)
    if keyword == "identityfile":
        declared.identity_files.append((option_words(keyword, raw)[0] if raw else "", source))
    elif keyword in PASSED_ONLY or keyword in ONLY:
        declared.passed.append(f"-o {argument}" if kind == "-o" else shown)
        declared.passed_keywords.add(keyword)
    elif keyword not in declared.options:  # OpenSSH: the first value obtained is used
        if keyword in ("proxyjump", "proxycommand") and ({"proxyjump", "proxycommand"} & set(declared.options)):
            return  # one setting to OpenSSH: whichever of the two comes first
        value = raw if keyword in MULTI_VALUED or keyword == "proxycommand" else (option_words(keyword, raw) or [""])[0]
        declared.options[keyword] = (value, source)


def check_keyword(keyword: str, raw: str, source: str, shown: str) -> None:
    value = (option_words(keyword, raw) or [""])[0].lower()
    if keyword == "stricthostkeychecking" and value not in STRICT:
        raise Refused(source, f"{shown}: golive verifies every host key against known_hosts and never accepts an "
                              f"unknown or changed one; remove the option (or set StrictHostKeyChecking=yes)")
    if keyword == "preferredauthentications" and "publickey" not in value.split(","):
        raise Refused(source, f"{shown}: golive authenticates with keys only (publickey)")
    if keyword == "preferredauthentications":
        return
    if keyword in ONLY and value not in ONLY[keyword]:
        raise Refused(source, f"{shown}: golive supports {keyword} {' or '.join(sorted(ONLY[keyword]))} only "
                              f"(it authenticates with keys only and forwards nothing)")
    if keyword not in USED and keyword not in PASSED_ONLY and keyword not in ONLY:
        raise Refused(source, f"{shown}: the ssh option {keyword!r} is not supported by golive (both engines must "
                              f"reach the host the same way); remove it, or ask for it to be supported")



# -- OpenSSH itself, for config files --------------------------------------------------------------

def ssh_binary() -> str | None:
    return shutil.which("ssh")


def ssh_g(args: list[str], host: str) -> dict[str, list[str]]:
    """`ssh -G`: the configuration OpenSSH would use for `host` with `args` (no connection made)."""
    binary = ssh_binary()
    if binary is None:
        raise Refused("", "reading an ssh_config file needs OpenSSH's client (ssh -G); install openssh-client")
    try:
        done = subprocess.run([binary, "-G", *args, "--", host], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise Refused("", f"ssh -G failed: {error}") from None
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Refused("", f"OpenSSH cannot read the configuration: {message}")
    settings: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        settings.setdefault(key.lower(), []).append(value)
    return settings


class ConfigCache:
    """`ssh -G` answers, kept in .golive-cache/ while what decides them is unchanged: the ssh binary,
    the home directory and user, the arguments, and every config file read (Includes too)."""

    def __init__(self, directory: Path | None) -> None:
        self.path = directory / "ssh-config.json" if directory else None
        self.entries: dict[str, Any] | None = None
        self.dirty = False

    def _load(self) -> dict[str, Any]:
        if self.entries is None:
            try:
                self.entries = json.loads(self.path.read_text()) if self.path else {}
            except (OSError, ValueError):
                self.entries = {}
        return self.entries

    def get(self, args: list[str], host: str, config: str) -> dict[str, list[str]]:
        key = self.key(args, host, config)
        if key is None:
            return ssh_g(args, host)
        entries = self._load()
        if key not in entries:
            entries[key] = ssh_g(args, host)
            self.dirty = True
        return entries[key]

    def key(self, args: list[str], host: str, config: str) -> str | None:
        files = config_files(config)
        if files is None:  # Match exec: the answer may change between runs
            return None
        binary = ssh_binary() or ""
        try:
            stat = os.stat(binary)
            binary_id = f"{binary}:{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            binary_id = binary
        digest = hashlib.sha256(json.dumps([binary_id, os.environ.get("HOME", ""), getpass.getuser(), args,
                                            host]).encode())
        for name in files:
            try:
                digest.update(name.encode() + b"\0" + hashlib.sha256(Path(name).read_bytes()).digest())
            except OSError:
                digest.update(name.encode() + b"\0missing")
        return digest.hexdigest()

    def save(self) -> None:
        if not self.dirty or self.path is None or self.entries is None:
            return
        try:
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            temporary.write_text(json.dumps(dict(list(self.entries.items())[-2000:])))
            os.replace(temporary, self.path)
        except OSError:
            pass  # a read-only workspace runs without the cache
        self.dirty = False


def config_files(config: str) -> list[str] | None:
    """The config file and every file it Includes (OpenSSH: relative to ~/.ssh for a user config);
    None when it has a `Match exec` (its answer may change from run to run)."""
    import glob

    found: list[str] = []
    pending = [config]
    while pending and len(found) < 200:
        name = os.path.expanduser(pending.pop(0))
        if name in found:
            continue
        found.append(name)
        try:
            text = Path(name).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            words = line.strip().split(None, 1)
            if not words or words[0].startswith("#"):
                continue
            keyword = words[0].lower().split("=")[0]
            rest = words[1] if len(words) > 1 else ""
            if keyword == "match" and "exec" in rest.lower().split():
                return None
            if keyword == "include":
                for pattern in shlex.split(rest):
                    pattern = os.path.expanduser(pattern)
                    if not os.path.isabs(pattern):
                        pattern = os.path.join(os.path.expanduser("~/.ssh"), pattern)
                    pending.extend(sorted(glob.glob(pattern)))
    return found


def config_line(config: str, keyword: str) -> str:
    """Where a keyword is first set in a config file (file:line), for messages."""
    for name in config_files(config) or [config]:
        try:
            lines = Path(name).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for number, line in enumerate(lines, 1):
            words = line.strip().replace("=", " ", 1).split()
            if words and words[0].lower() == keyword:
                return f"{name}:{number}"
    return config


# -- resolving a route ------------------------------------------------------------------------------

@dataclass
class Resolver:
    """Resolves hosts' routes for one workspace (its ssh -G cache, golive.yml's ssh_config)."""

    workspace: Path
    default_config: str = ""  # golive.yml connection.ssh_config, resolved against the workspace
    cache: ConfigCache | None = None
    _defaults: dict[str, list[str]] | None = None

    def route(self, name: str, connection: Connection, where: Any) -> tuple[Route | None, list[Problem]]:
        """(route, []) or (None, problems). `where(variable)` names where a variable was set."""
        args = list(connection.ssh_args)
        sources = list(connection.ssh_arg_sources)
        if connection.refused:
            return None, [Problem(self._where(source, where), message, (name,))
                          for source, message in connection.refused]
        try:
            declared = parse_args(args, sources)
            if declared.config is None and self.default_config:
                declared.config = (self.default_config, CONFIG_SOURCE)
            route = self._route(connection.address, declared, args, depth=0)
        except Refused as refused:
            return None, [Problem(self._where(refused.source, where), refused.message, (name,))]
        return route, []

    def file_problems(self, name: str, connection: Connection, route: Route, where: Any) -> list[Problem]:
        """The key and known_hosts files the route needs that are missing or unreadable (checked
        when a host is about to be contacted: validate may run where the keys are not)."""
        try:
            self._check_files(route, parse_args(list(connection.ssh_args), list(connection.ssh_arg_sources)))
        except Refused as refused:
            return [Problem(self._where(refused.source, where), refused.message, (name,))]
        return []

    def _where(self, source: str, where: Any) -> str:
        if source.startswith("ansible_"):
            return where(source)
        return source

    def _config_path(self, declared: Declared) -> str:
        if declared.config is None:
            return ""
        path, source = declared.config
        if path in ("none", "/dev/null"):
            return ""
        full = os.path.expanduser(path)
        if not os.path.isabs(full):
            full = str(self.workspace / full)  # ansible-playbook runs in the workspace (golive runs it there)
        if not os.path.isfile(full) or not os.access(full, os.R_OK):
            reason = "is not readable" if os.path.exists(full) else "does not exist"
            raise Refused(source, f"the ssh_config file {path} {reason}")
        return full

    # -- one hop and the hops before it --

    def _route(self, address: str, declared: Declared, args: list[str], depth: int,
               spec_user: str = "", spec_port: str = "", inherited: Declared | None = None,
               own_proxy: bool = True) -> Route:
        if depth > MAX_JUMPS:
            raise Refused(declared.config[1] if declared.config else "",
                          f"more than {MAX_JUMPS} jump hosts on the way to {address} (a ProxyJump loop?)")
        config = self._config_path(declared)
        settings = self._settings(address, declared, args, config, spec_user, spec_port, inherited)
        trust = inherited or declared
        hop = Hop(
            name=address,
            address=settings["hostname"],
            port=int(settings["port"]),
            user=settings["user"],
            identity_files=tuple(settings["identityfile"]),
            known_hosts_files=tuple(settings["userknownhostsfile"]) + tuple(settings["globalknownhostsfile"]),
            host_key_alias=settings.get("hostkeyalias", ""),
            connect_timeout=float(settings["connecttimeout"]) if settings.get("connecttimeout") else None,
        )
        keepalive = int(settings.get("serveraliveinterval") or 0)
        proxy_jump = settings.get("proxyjump", "") if own_proxy else ""
        proxy_command = settings.get("proxycommand", "") if own_proxy else ""
        passed = tuple(declared.passed) + tuple(settings.get("passed") or ())
        if proxy_command:
            return Route(hop, (), expand_proxy_command(proxy_command, hop, address, settings["source:proxycommand"]),
                         config, keepalive, passed)
        if not proxy_jump:
            return Route(hop, (), "", config, keepalive, passed)
        hops = [h.strip() for h in proxy_jump.split(",") if h.strip()]
        jumps: list[Hop] = []
        proxy = ""
        for index, spec in enumerate(hops):
            user, host, port = parse_jump(spec, settings["source:proxyjump"])
            jump_declared = Declared(config=declared.config)
            hop_route = self._route(host, jump_declared, ["-F", config] if config else [], depth + 1, user, port,
                                    inherited=trust, own_proxy=index == 0)
            if index == 0:
                jumps.extend(hop_route.jumps)
                proxy = hop_route.proxy_command
            jumps.append(hop_route.target)
        return Route(hop, tuple(jumps), proxy, config, keepalive, passed)

    def _settings(self, address: str, declared: Declared, args: list[str], config: str, spec_user: str,
                  spec_port: str, inherited: Declared | None) -> dict[str, Any]:
        """A hop's values: command line (and, for a jump host, its spec and the command line's trust
        options), then the config file's, then OpenSSH's defaults."""
        trust = inherited or declared
        values: dict[str, Any] = {"source:proxycommand": "", "source:proxyjump": ""}
        for keyword, (value, source) in declared.options.items():
            values[keyword] = value
            values[f"source:{keyword}"] = source
        if spec_user:
            values.setdefault("user", spec_user)
        if spec_port:
            values.setdefault("port", spec_port)
        identity = [p for p, _ in trust.identity_files]
        if inherited is not None:
            for keyword in ("userknownhostsfile", "globalknownhostsfile", "stricthostkeychecking",
                            "connecttimeout"):
                if inherited.value(keyword) is not None and keyword not in values:
                    values[keyword] = inherited.value(keyword)
        if config:
            settings = self._from_config(address, declared, args, config, spec_user, spec_port, values)
            identity += [p for p in settings.pop("identityfile") if p not in identity]
            values = {**settings, **values}
        hostname = values.get("hostname") or address
        values["hostname"] = expand_tokens(hostname, {"h": address}, "HostName",
                                           values.get("source:hostname") or CONFIG_SOURCE)
        values.setdefault("port", "22")
        try:
            int(values["port"])
        except ValueError:
            raise Refused(values.get("source:port", ""), f"port {values['port']!r} is not a number") from None
        values.setdefault("user", getpass.getuser())
        strict = str(values.get("stricthostkeychecking") or "ask").lower()
        if strict not in STRICT:
            raise Refused(values.get("source:stricthostkeychecking") or config,
                          f"StrictHostKeyChecking {strict} (for {address}): golive verifies every host key against "
                          f"known_hosts and never accepts an unknown or changed one; set it to yes")
        values["identityfile"] = list(dict.fromkeys(expand_path(p, values, "IdentityFile") for p in identity if p))
        user_files = values.get("userknownhostsfile")
        user_files = option_words("userknownhostsfile", user_files) if isinstance(user_files, str) else \
            (user_files or list(DEFAULT_KNOWN_HOSTS))
        values["userknownhostsfile"] = [expand_path(p, values, "UserKnownHostsFile") for p in user_files
                                        if p != "none"]
        global_files = values.get("globalknownhostsfile") or []
        global_files = option_words("globalknownhostsfile", global_files) if isinstance(global_files, str) \
            else global_files
        values["globalknownhostsfile"] = [expand_path(p, values, "GlobalKnownHostsFile") for p in global_files
                                          if p not in ("none", "/dev/null")]
        timeout = values.get("connecttimeout")
        values["connecttimeout"] = "" if timeout in (None, "", "none") else timeout
        for keyword in ("proxyjump", "proxycommand"):
            if str(values.get(keyword, "")).lower() == "none":
                values[keyword] = ""
        return values

    def _from_config(self, address: str, declared: Declared, args: list[str], config: str, spec_user: str,
                     spec_port: str, values: dict[str, Any]) -> dict[str, Any]:
        """What OpenSSH makes of the config file for this hop (ssh -G), in the values' terms; an
        option the file sets that golive does not support is refused, naming the file and line."""
        command = [a for a in _without_config(args)]
        if spec_user:
            command += ["-l", spec_user]
        if spec_port:
            command += ["-p", spec_port]
        command += ["-F", config]
        cache = self.cache or ConfigCache(None)
        try:
            printed = cache.get(command, address, config)
        except Refused as refused:
            raise Refused(declared.config[1] if declared.config else config, refused.message) from None
        defaults = self.defaults()
        settings: dict[str, Any] = {"passed": []}
        for keyword, printed_values in printed.items():
            first = printed_values[0] if printed_values else ""
            if keyword in ("host", "identityfile") or keyword in declared.passed_keywords:
                continue
            if keyword in values or keyword in ("hostname", "user", "port"):
                settings[keyword] = " ".join(printed_values) if keyword in MULTI_VALUED else first
                continue
            if printed_values == defaults.get(keyword):
                continue
            where = config_line(config, keyword)
            if keyword in USED:
                settings[keyword] = " ".join(printed_values) if keyword in MULTI_VALUED else first
                settings[f"source:{keyword}"] = where
                continue
            check_keyword(keyword, first, where, f"{keyword} {first} (in {where})")
            settings["passed"] += [f"-o {keyword}={value}" for value in printed_values]
        ids = printed.get("identityfile", [])
        settings["identityfile"] = [] if ids == defaults.get("identityfile") else ids
        return settings

    def defaults(self) -> dict[str, list[str]]:
        """OpenSSH's own defaults (what no option and no file sets)."""
        if self._defaults is None:
            self._defaults = (self.cache or ConfigCache(None)).get(["-F", "/dev/null"], "golive-defaults.invalid", "")
        return self._defaults

    def _check_files(self, route: Route, declared: Declared) -> None:
        """Every hop's key files and known_hosts files must be there: found before any host is
        contacted, naming where they were set."""
        for hop in route.hops:
            for path in hop.identity_files:
                if not (os.path.isfile(path) and os.access(path, os.R_OK)):
                    source = next((s for p, s in declared.identity_files if expand_path(p, {}, "") == path),
                                  route.config_file)
                    reason = "is not readable" if os.path.exists(path) else "does not exist"
                    what = "" if hop is route.target else f" (for the jump host {hop.name})"
                    raise Refused(source, f"{_named(source)}the SSH private key {path} {reason}{what}")
            if not any(os.path.isfile(p) and os.access(p, os.R_OK) for p in hop.known_hosts_files):
                source = declared.options.get("userknownhostsfile", ("", ""))[1] or route.config_file
                files = " ".join(hop.known_hosts_files) or "(none)"
                what = "the host's" if hop is route.target else f"the jump host {hop.name}'s"
                if not source:
                    raise Refused("", f"the SSH known_hosts file {files} does not exist (the default; set "
                                      f"UserKnownHostsFile in ansible_ssh_common_args to name another); cannot "
                                      f"verify {what} key")
                raise Refused(source, f"{_named(source)}the SSH known_hosts file {files} does not exist or is not "
                                      f"readable; cannot verify {what} key")


def _named(source: str) -> str:
    return f"{source}: " if source.startswith(("ansible_", "ANSIBLE_")) else ""


def _without_config(args: list[str]) -> list[str]:
    """The command line without its -F (the config file is given last, explicitly)."""
    out: list[str] = []
    skip = False
    for index, token in enumerate(args):
        if skip:
            skip = False
            continue
        if token == "-F":
            skip = True
            continue
        if token.startswith("-F") and len(token) > 2:
            continue
        out.append(token)
        del index
    return out


def parse_jump(spec: str, source: str) -> tuple[str, str, str]:
    """A ProxyJump entry `[user@]host[:port]` -> (user, host, port)."""
    if "://" in spec:
        raise Refused(source, f"ProxyJump {spec}: write it as [user@]host[:port]")
    user, _, rest = spec.rpartition("@")
    host, port = rest, ""
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail.removeprefix(":")
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    if not host or (port and not port.isdigit()):
        raise Refused(source, f"ProxyJump {spec!r} is not [user@]host[:port]")
    return user, host, port


def expand_tokens(text: str, values: Mapping[str, str], what: str, source: str) -> str:
    def one(match: re.Match) -> str:
        token = match.group(1)
        if token == "%":
            return "%"
        if token in values:
            return values[token]
        raise Refused(source, f"{what} {text!r}: the token %{token} is not supported by golive (%h, %p, %r, %n "
                              f"and %% are)")

    return TOKENS.sub(one, text)


def expand_path(path: str, values: Mapping[str, Any], what: str) -> str:
    path = expand_tokens(path, {"d": os.path.expanduser("~"), "u": getpass.getuser()}, what, "")
    return os.path.expanduser(path)


def expand_proxy_command(command: str, hop: Hop, original: str, source: str) -> str:
    return expand_tokens(command, {"h": hop.address, "p": str(hop.port), "r": hop.user, "n": original},
                         "ProxyCommand", source)


# -- the same route, for OpenSSH (the Ansible engine, plain pytest) --------------------------------

def hop_options(hop: Hop) -> list[str]:
    """A hop as explicit OpenSSH options: every value golive resolved, host keys checked strictly."""
    options = [f"HostName={_percent(hop.address)}", f"Port={hop.port}", f"User={hop.user}", "BatchMode=yes",
               "StrictHostKeyChecking=yes", f"UserKnownHostsFile={_known_hosts_value(hop)}",
               "GlobalKnownHostsFile=/dev/null", "IdentitiesOnly=yes"]
    options += [f"IdentityFile={_percent(path)}" for path in hop.identity_files]
    if hop.host_key_alias:
        options.append(f"HostKeyAlias={hop.host_key_alias}")
    if hop.connect_timeout:
        options.append(f"ConnectTimeout={int(hop.connect_timeout)}")
    return options


def _known_hosts_value(hop: Hop) -> str:
    return " ".join(_percent(p) for p in hop.known_hosts_files) or "/dev/null"


def _percent(text: str) -> str:
    return text.replace("%", "%%")


def proxy_command_for(route: Route) -> str:
    """The command that takes OpenSSH to the route's host the way golive goes (literal: give it to
    OpenSSH with % escaped): through each jump host, each verified and authenticated as golive
    does it - OpenSSH's own ProxyJump would give a jump host none of these options."""
    ssh = ssh_binary() or "ssh"
    command = route.proxy_command  # reaches the first hop
    hops = route.hops
    for index, jump in enumerate(route.jumps):
        following = hops[index + 1]
        argv = [ssh, "-F", "/dev/null"]
        for option in hop_options(jump):
            argv += ["-o", option]
        if command:
            argv += ["-o", f"ProxyCommand={_percent(command)}"]
        argv += ["-W", f"[{following.address}]:{following.port}", "--", jump.address]
        command = " ".join(shlex.quote(a) for a in argv)
    return command


def openssh_options(route: Route) -> list[str]:
    """The route as OpenSSH arguments (the Ansible engine's ansible_ssh_args for the host): no
    ssh_config read, every value explicit, what golive passes through kept."""
    options = ["-F", "/dev/null"]
    for option in hop_options(route.target):
        options += ["-o", option]
    proxy = proxy_command_for(route)
    if proxy:
        options += ["-o", f"ProxyCommand={_percent(proxy)}"]
    if route.keepalive:
        options += ["-o", f"ServerAliveInterval={route.keepalive}"]
    for passed in route.passed_through:
        options += shlex.split(passed)
    return options


def ssh_config_entry(names: Iterable[str], route: Route) -> list[str]:
    """The route as an ssh_config entry (the plain-pytest path of the checks)."""
    lines = [f"Host {' '.join(names)}"]
    for option in hop_options(route.target):
        key, _, value = option.partition("=")
        lines.append(f"  {key} {value}")
    proxy = proxy_command_for(route)
    if proxy:
        lines.append(f"  ProxyCommand {_percent(proxy)}")
    if route.keepalive:
        lines.append(f"  ServerAliveInterval {route.keepalive}")
    return lines
