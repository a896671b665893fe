"""golive fingerprint collector: what one host really runs, in one round trip.

Sent like the host agent (see golive.agent) and run with the host's python3, standard library
only. It only reads: every entry of the live release directory (code, rendered config, the shared
links, the directory itself: type, mode, owner, group, size, sha256 or link target; never a file's
contents), the config links, the ledger's view of what is live, the platform (the time zone by the
zone data /etc/localtime holds, not only by its name), the runtime packages, the service (its
systemd unit files by content) and its /health answer, the listening ports on the host's own
addresses, locale, free disk, the lock and the kept releases. Nothing in the release is skipped
but what golive.yml's `drift.ignore` names, and those are counted. The answer has
the host agent's shape (one step named "fingerprint"), so golive.adapters.remote.call_agent reads it.

Every section is collected on its own: a section that fails reports its error and the others
still arrive, so one unreadable file does not hide the rest of the host.
"""

import os
import socket
import stat
import struct
import sys
import time

# Imported where used (subprocess, urllib, grp, pwd): every module costs each host CPU time, and
# drift runs this on every host of two environments at once.
if __name__ != "golive_agent":  # on the controller; on a host golive.agent sends shared.py ahead of this
    from golive.agent.shared import (
        Masker,
        from_json,
        health_expected,
        health_problem,
        host_platform,
        http_get,
        read_json,
        read_output_tail,
        scan_release,
        sha256,
        sha256_file,
        to_json,
    )

SCHEMA = 1
LEDGER_TAIL_BYTES = 262144
TCP_LISTEN = "0A"
ZONEINFO = "/usr/share/zoneinfo"
# Where systemd finds units, highest priority first (systemd.unit(5)); the first holding the unit
# is its fragment, drop-ins (<unit>.d/*.conf) count from every one.
UNIT_DIRS = ("/etc/systemd/system.control", "/run/systemd/system.control", "/run/systemd/transient",
             "/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/lib/systemd/system",
             "/usr/lib/systemd/system")


_NAMES = {}


def user_name(uid):
    if ("u", uid) not in _NAMES:
        import pwd

        try:
            _NAMES[("u", uid)] = pwd.getpwuid(uid).pw_name
        except KeyError:
            _NAMES[("u", uid)] = str(uid)
    return _NAMES[("u", uid)]


def group_name(gid):
    if ("g", gid) not in _NAMES:
        import grp

        try:
            _NAMES[("g", gid)] = grp.getgrgid(gid).gr_name
        except KeyError:
            _NAMES[("g", gid)] = str(gid)
    return _NAMES[("g", gid)]


def describe_stat(info):
    return {"mode": "%04o" % stat.S_IMODE(info.st_mode), "owner": user_name(info.st_uid),
            "group": group_name(info.st_gid)}


def run(command, masker, timeout=10, cwd=None, env_extra=None):
    """(exit code, output) of a shell command; output in a file so a daemon cannot hang us."""
    import subprocess
    import tempfile

    env = None
    if env_extra:
        env = dict(os.environ)
        env.update(env_extra)
    with tempfile.TemporaryFile() as output:
        try:
            process = subprocess.Popen(command, shell=True, stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT, close_fds=True, env=env,
                                       cwd=cwd if cwd and os.path.isdir(cwd) else None)
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = -1
        except OSError as error:
            return 127, str(error)
        return code, read_output_tail(output, 4000, masker)  # masked on the raw bytes, then cut


class Collector(object):
    def __init__(self, request):
        self.request = request
        self.root = request["root"]
        self.config_dir = request.get("config_dir") or ""
        self.releases_dir = os.path.join(self.root, "releases")
        self.state_dir = os.path.join(self.root, ".golive")
        self.current = None
        self.meta = None
        self.run_spec = {}
        self.errors = {}
        self.masker = Masker(request.get("mask"))

    def section(self, name, function):
        started = time.time()
        try:
            value = function()
        except Exception as error:  # reported per section; the other sections still count
            self.errors[name] = "%s: %s" % (type(error).__name__, error)
            value = None
        return value, round(time.time() - started, 4)

    # -- the live release ------------------------------------------------------------------

    def release(self):
        try:
            target = os.readlink(os.path.join(self.root, "current"))
        except OSError:
            target = None
        self.current = os.path.basename(target.rstrip("/")) if target else None
        self.meta = read_json(os.path.join(self.state_dir, "releases", "%s.json" % self.current)) \
            if self.current else None
        # How the release runs: its run file (0600), or its metadata when it was deployed before
        # golive kept them apart (the host agent's Agent.run_spec).
        run = read_json(os.path.join(self.state_dir, "releases", "%s.run.json" % self.current)) \
            if self.current else None
        self.run_spec = run if run is not None else (self.meta or {})
        directory = os.path.join(self.releases_dir, self.current) if self.current else None
        owner = describe_stat(os.stat(directory)) if directory and os.path.isdir(directory) else None
        return {"id": self.current, "link_target": target, "exists": bool(owner), "dir": owner,
                "meta": self.release_view()}

    def release_view(self):
        """The live release as the controller compares it: its metadata with its service, health
        check and secret files' digests (they travel to the controller, which knows them anyway)."""
        if self.meta is None:
            return None
        view = dict(self.meta)
        for key in ("service", "health"):
            if key in self.run_spec:
                view[key] = self.run_spec[key]
        digests = self.run_spec.get("secret_files") or {}
        view["config_files"] = [dict(item, sha256=digests[item.get("dest")])
                                if item.get("dest") in digests and "sha256" not in item else item
                                for item in self.meta.get("config_files", [])]
        return view

    def releases(self):
        kept = []
        try:
            names = os.listdir(self.releases_dir)
        except OSError:
            return kept
        for name in sorted(names):
            if name.endswith(".partial") or name.startswith("."):
                continue
            meta = read_json(os.path.join(self.state_dir, "releases", name + ".json"), {}) or {}
            kept.append({"id": name, "version": meta.get("version"), "state": meta.get("state", "unknown"),
                         "artifact_sha256": meta.get("artifact_sha256"), "created_at": meta.get("created_at")})
        return kept

    def tree(self):
        """Every entry of the live release directory by lstat, a sha256 of every file; owners by name,
        and the user this runs as (the one golive deploys as: what it unpacks belongs to them)."""
        if not self.current:
            return None
        base = os.path.join(self.releases_dir, self.current)
        if not os.path.isdir(base):
            return None
        entries, skipped = scan_release(base, self.request.get("ignore") or ())
        for entry in entries.values():
            entry["owner"] = user_name(entry.pop("uid"))
            entry["group"] = group_name(entry.pop("gid"))
        return {"entries": entries, "ignored": skipped,
                "deployer": {"owner": user_name(os.geteuid()), "group": group_name(os.getegid())}}

    def config(self):
        """The links in config_dir that publish the rendered files (the files themselves are in the tree)."""
        dests = set(self.request.get("config_files") or [])
        for item in (self.meta or {}).get("config_files", []):
            dests.add(item.get("dest"))
        links = {}
        if self.config_dir:
            for dest in sorted(d for d in dests if d):
                links[dest] = self._published(dest)
        return {"links": links,
                "config_dir": describe_stat(os.stat(self.config_dir))
                if self.config_dir and os.path.isdir(self.config_dir) else None}

    def _published(self, dest):
        link = os.path.join(self.config_dir, dest)
        if os.path.islink(link):
            return {"type": "link", "target": os.readlink(link)}
        if os.path.isfile(link):
            entry = describe_stat(os.stat(link))
            entry.update(type="file", sha256=sha256_file(link))
            return entry
        return {"type": "missing"}

    # -- history -------------------------------------------------------------------------------

    def ledger(self):
        path = os.path.join(self.state_dir, "ledger.jsonl")
        try:
            with open(path, "rb") as handle:
                handle.seek(0, 2)
                handle.seek(max(0, handle.tell() - LEDGER_TAIL_BYTES))
                lines = handle.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return {"exists": False}
        live = None
        checks = []
        for line in lines:
            try:
                entry = from_json(line)
            except ValueError:
                continue
            if entry.get("action") in ("deploy", "rollback") and entry.get("result") in ("ok", "unchanged"):
                live = entry
            elif entry.get("action") == "check":
                checks.append(entry)
        keep = ("time", "action", "result", "release", "version", "artifact_sha256", "config_hash",
                "operator", "engine", "detail")
        checked = keep + ("checks",)  # a check run's entry names the checks that passed
        last_check = dict((k, checks[-1].get(k)) for k in checked) if checks else None
        current_checks = [c for c in checks if c.get("release") == self.current]
        check_for_current = dict((k, current_checks[-1].get(k)) for k in checked) if current_checks else None
        return {"exists": True, "live": dict((k, live.get(k)) for k in keep) if live else None,
                "last_check": last_check, "check_for_current": check_for_current}

    def lock(self):
        lock_dir = os.path.join(self.state_dir, "lock")
        if not os.path.isdir(lock_dir):
            return None
        owner = read_json(os.path.join(lock_dir, "owner.json")) or {"incomplete": True}
        owner.pop("token", None)
        return owner

    # -- the platform --------------------------------------------------------------------------

    def platform(self):
        os_release = {}
        for path in ("/etc/os-release", "/usr/lib/os-release"):
            try:
                with open(path) as handle:
                    for line in handle:
                        if "=" in line:
                            key, value = line.rstrip("\n").split("=", 1)
                            os_release[key] = value.strip().strip('"')
                break
            except OSError:
                continue
        uname = os.uname()
        zone = self.timezone()
        facts = host_platform()  # what an artifact may require (preflight's requirements item)
        return {"glibc": facts["glibc"], "python_path": facts["python_path"],
                "os": os_release.get("PRETTY_NAME") or os_release.get("NAME"),
                "os_id": os_release.get("ID"), "os_version": os_release.get("VERSION_ID"),
                "kernel": uname.release, "machine": facts["arch"], "python": facts["python"],
                "hostname": socket.gethostname(), "timezone": zone[0], "timezone_data": zone[1],
                "timezone_named_data": zone[2], "locale": self.locale()}

    @staticmethod
    def timezone():
        """(name, sha256 of the zone data /etc/localtime holds, sha256 of the data of the zone the
        name names): a /etc/localtime replaced while /etc/timezone still names the old zone shows."""
        name = None
        try:
            with open("/etc/timezone") as handle:
                name = handle.read().strip() or None
        except OSError:
            pass
        if name is None:
            try:
                target = os.readlink("/etc/localtime")
                marker = "zoneinfo/"
                name = target.split(marker, 1)[1] if marker in target else target
            except OSError:
                name = os.environ.get("TZ") or "UTC"
        named = None
        if name and not name.startswith("/") and ".." not in name.split("/"):
            named = file_digest(os.path.join(ZONEINFO, name))
        return name, file_digest("/etc/localtime"), named

    @staticmethod
    def locale():
        for path in ("/etc/default/locale", "/etc/locale.conf"):
            try:
                with open(path) as handle:
                    for line in handle:
                        if line.startswith("LANG="):
                            return line.split("=", 1)[1].strip().strip('"')
            except OSError:
                continue
        return os.environ.get("LANG") or "C"

    def packages(self):
        names = [n for n in self.request.get("runtime_packages") or [] if n]
        if not names:
            return {}
        try:
            return dpkg_versions(names)
        except OSError:
            pass  # not a dpkg system
        found = dict((n, None) for n in names)
        quoted = " ".join("'%s'" % n.replace("'", "") for n in names)
        code, output = run("rpm -q --qf '%%{NAME}\\t%%{VERSION}-%%{RELEASE}\\tinstalled\\n' %s 2>/dev/null" % quoted,
                           self.masker)
        for line in output.splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[0] in found:
                found[parts[0]] = parts[1]
        return found

    # -- the service ---------------------------------------------------------------------------

    def service(self):
        """Running, and what it serves. A service whose health check passes is running; only when it
        does not is the (slower) status command asked. A systemd unit's files are read by content:
        a unit edited on one host runs differently under the same name."""
        service = self.run_spec.get("service") or {}
        if not self.current or not service:
            return {"defined": False, "running": None}
        unit = service.get("systemd_unit")
        found = {"defined": True}
        if unit:
            found["unit_files"] = unit_files(unit)
        health = self.health()
        if health is not None and not health.get("problem"):
            found.update(running=True, exit_code=None, health=health)
            return found
        command = "systemctl is-active --quiet %s" % unit if unit else service.get("status")
        if not command:
            return {"defined": False, "running": None, "health": health}
        code, output = run(command, self.masker, timeout=self.request.get("status_timeout", 10),
                           cwd=os.path.join(self.releases_dir, self.current))
        found.update(running=code == 0, exit_code=code, output=self.masker.tail(output.strip(), 200), health=health)
        return found

    def health(self):
        """The live release's health check, once, by the rule verify applies (shared.health_problem):
        {"url" or "command", "status" (HTTP status or exit code), "problem" ("" when healthy),
        "report" (what the answer reports, when it is a JSON object)}; masked first."""
        health = self.run_spec.get("health") or {}
        url, command = health.get("url"), health.get("command")
        if not url and not command:
            return None
        timeout = float(health.get("timeout", 2))
        release_dir = os.path.join(self.releases_dir, self.current)
        if url:
            try:
                code, raw = http_get(url, timeout)
                body = raw.decode("utf-8", "replace")  # parsed as it came; what is quoted of it is masked first
            except Exception as error:  # refused or timed out: the service does not answer
                code, body = None, self.masker.text(str(getattr(error, "reason", error)))
        else:
            code, body = run(command, self.masker, timeout=timeout, cwd=release_dir, env_extra={
                "GOLIVE_RELEASE": self.current, "GOLIVE_RELEASE_DIR": release_dir, "GOLIVE_PREVIOUS_RELEASE": "",
                "GOLIVE_APP_ROOT": self.root})
        try:
            report = from_json(body) if code is not None else None
        except ValueError:
            report = None
        keep = ("status", "version", "config_hash", "release", "company")
        problem = self.masker.text(health_problem(health, health_expected(self.meta, self.current), code, body,
                                                  self.masker))
        found = {"status": code, "problem": problem,
                 "report": self.masker.data(dict((k, report.get(k)) for k in keep if k in report))
                 if isinstance(report, dict) else {}}
        found["url" if url else "command"] = self.masker.text(url or command)
        return found

    def ports(self):
        """TCP ports listening on this host's own addresses or on every address."""
        own = set(self.request.get("addresses") or [])
        url = ((self.meta or {}).get("health") or {}).get("url") or ""
        if url.startswith(("http://", "https://")):  # where the live release's health check asks
            authority = url.split("/")[2].rsplit("@", 1)[-1]
            own.add(authority.rsplit(":", 1)[0].strip("[]") if authority.count(":") == 1 or "]" in authority
                    else authority.strip("[]"))
        try:
            listening = listening_netlink()
        except (OSError, ValueError, AttributeError):
            listening = listening_proc()
        found = set()
        for address, port in listening:
            if address in ("0.0.0.0", "::"):
                found.add((port, "any"))
            elif address in own or address.replace("::ffff:", "") in own:
                found.add((port, "own"))
        return [{"port": port, "address": where} for port, where in sorted(found)]

    def disk(self):
        usage = os.statvfs(self.root if os.path.isdir(self.root) else "/")
        return {"free_bytes": usage.f_bavail * usage.f_frsize, "total_bytes": usage.f_blocks * usage.f_frsize}

    # -- all of it -----------------------------------------------------------------------------

    def collect(self):
        sections = ("release", "releases", "tree", "config", "ledger", "lock", "platform", "packages",
                    "service", "ports", "disk")
        data = {"schema": SCHEMA}
        seconds = {}
        for name in sections:
            data[name], seconds[name] = self.section(name, getattr(self, name))
        data["errors"] = self.errors
        data["seconds"] = seconds
        return data


def file_digest(path):
    """sha256 of what `path` holds (links followed), None when it cannot be read."""
    try:
        return sha256_file(path, sha256())
    except OSError:
        return None


def unit_files(unit):
    """path -> sha256 of a systemd unit's fragment and drop-ins, as systemd would find them."""
    name = unit if "." in unit else unit + ".service"
    files = {}
    fragment_found = False
    for directory in UNIT_DIRS:
        fragment = os.path.join(directory, name)
        if not fragment_found and os.path.lexists(fragment):
            fragment_found = True
            files[fragment] = file_digest(fragment)
        drop_ins = os.path.join(directory, name + ".d")
        try:
            names = sorted(n for n in os.listdir(drop_ins) if n.endswith(".conf"))
        except OSError:
            continue
        for conf in names:
            files[os.path.join(drop_ins, conf)] = file_digest(os.path.join(drop_ins, conf))
    return files


def decode_address(address_hex, family):
    raw = bytes.fromhex(address_hex)
    if family == socket.AF_INET:
        return socket.inet_ntop(family, struct.pack("<I", struct.unpack(">I", raw)[0]))
    # /proc/net/tcp6 prints four host-order 32-bit words
    words = struct.unpack(">4I", raw)
    return socket.inet_ntop(family, struct.pack("<4I", *words))


def listening_proc():
    """Listening TCP sockets from /proc (slow on a host with many connections: every one is listed)."""
    found = []
    for path, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            with open(path) as table:
                lines = table.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 4 and fields[3] == TCP_LISTEN:
                address_hex, port_hex = fields[1].split(":")
                found.append((decode_address(address_hex, family), int(port_hex, 16)))
    return found


def listening_netlink():
    """Listening TCP sockets from the kernel's sock_diag, filtered in the kernel (as `ss -l` does)."""
    sock_diag, by_family, request_flags, done, error = 4, 20, 0x1 | 0x300, 3, 2
    listen_state = 10
    found = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, sock_diag) as link:
        for sequence, family in enumerate((socket.AF_INET, socket.AF_INET6), 1):
            # inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed inet_diag_sockid (48 bytes)
            request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << listen_state) + b"\0" * 48
            link.send(struct.pack("=IHHII", 16 + len(request), by_family, request_flags, sequence, 0) + request)
            finished = False
            while not finished:
                data = link.recv(1 << 16)
                offset = 0
                while offset + 16 <= len(data):
                    length, kind = struct.unpack_from("=IH", data, offset)
                    if kind == done:
                        finished = True
                        break
                    if kind == error or length < 16:
                        raise ValueError("sock_diag refused the request")
                    # inet_diag_msg: family, state, timer, retrans, then sport (be16) at 4, source at 8
                    message = offset + 16
                    port = struct.unpack_from(">H", data, message + 4)[0]
                    raw = data[message + 8:message + 24]
                    address = socket.inet_ntop(family, raw[:4] if family == socket.AF_INET else raw)
                    found.append((address, port))
                    offset += (length + 3) & ~3
    return found


def dpkg_versions(names):
    """Installed versions from dpkg's status file (what dpkg-query reads), without a process."""
    found = dict((n, None) for n in names)
    with open("/var/lib/dpkg/status", "rb") as handle:
        text = handle.read().decode("utf-8", "replace")
    for name in names:
        start = text.find("Package: %s\n" % name)
        while start > 0 and text[start - 1] != "\n":
            start = text.find("Package: %s\n" % name, start + 1)
        if start < 0:
            continue
        end = text.find("\n\n", start)
        block = text[start:end if end > 0 else len(text)]
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(" "))
        if fields.get("Status", "").endswith(" installed"):
            found[name] = fields.get("Version")
    return found


def main(raw_request):
    started = time.time()
    request = from_json(raw_request.decode("utf-8"))
    data = Collector(request).collect()
    step = {"name": "fingerprint", "op": "fingerprint", "ok": True, "data": data,
            "seconds": round(time.time() - started, 4)}
    answer = {"schema": SCHEMA, "ok": True, "failed_step": None, "error": None, "holder": None, "result": "ok",
              "current": (data.get("release") or {}).get("id"), "vars": {}, "steps": [step]}
    payload = to_json(answer).encode("utf-8")
    try:
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
    except (IOError, OSError):
        pass


if __name__ == "golive_agent":
    main(REQUEST)  # noqa: F821 - provided by the bootstrap
