"""golive host agent: the remote half of every golive step.

The controller sends this file (compressed) with a JSON request over one SSH exec channel and
gets one JSON document back, so several steps cost one round trip. It runs under the host's own
python3 (>= 3.6) with the standard library only, and keeps running if the controller dies, so a
batch that started a cutover also finishes it (or rolls it back) and leaves the host on a complete
release. The on-host layout and formats are described in docs/design.md.
"""

import errno
import os
import sys
import time

# Only what every request needs is imported here: each module costs the host a few milliseconds
# of CPU per request, which a fleet pays 30 times over. Steps import the rest when they run.
try:
    import _signal as signal  # the C module: `signal` itself imports enum (~7 ms with python3 -S)
except ImportError:
    import signal
if __name__ != "golive_agent":  # on the controller; on a host golive.agent sends shared.py ahead of this
    from golive.agent.archive import (
        ArchiveRefused,
        check_archive,
        check_complete,
        compare_manifest,
        extract_checked,
        manifest_of,
        open_declared,
    )
    from golive.agent.shared import (
        CHUNK,
        Masker,
        fast_sha256,
        from_json,
        health_expect,
        health_expected,
        health_problem,
        host_platform,
        http_get,
        read_json,
        read_output_tail,
        release_differences,
        scan_release,
        sha256,
        sha256_file,
        to_json,
    )

SCHEMA = 1
OUTPUT_LIMIT = 4000


class StepError(Exception):
    """A step could not do its job; the message is shown to the operator."""


def utc_now():
    """UTC with milliseconds: ledger entries of one second still sort in the order they happened."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % (int(now * 1000) % 1000)


def write_atomic(path, data, mode=0o644):
    temporary = "%s.tmp-%d" % (path, os.getpid())
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.rename(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def remove_tree(path):
    """Remove a directory tree, ignoring errors. A missing path or a directory of plain files (a
    lock) needs no shutil, whose import costs each host ~10 ms of CPU a request."""
    if not os.path.lexists(path):
        return
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            raise OSError("not a plain directory")  # shutil decides (it refuses links)
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    raise OSError("has subdirectories")
                os.unlink(entry.path)
        os.rmdir(path)
        return
    except OSError:
        pass
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def symlink_atomic(target, link):
    """Point `link` at `target` in one rename, so readers see the old or the new link, never none."""
    temporary = "%s.tmp-%d" % (link, os.getpid())
    if os.path.lexists(temporary):
        os.unlink(temporary)
    os.symlink(target, temporary)
    os.rename(temporary, link)


def wait_for(pid, timeout):
    """The exit code of a child, or None after killing it at the timeout."""
    status = wait_status(pid, timeout)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def wait_status(pid, timeout):
    """The child's wait status once it exits, or None while it still runs after timeout seconds."""
    pidfd = None
    if hasattr(os, "pidfd_open"):  # Linux >= 5.3, Python >= 3.9: woken the moment the child exits
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = None
    if pidfd is not None:
        import select

        try:
            exited = select.select([pidfd], [], [], timeout)[0]
        finally:
            os.close(pidfd)
        return os.waitpid(pid, 0)[1] if exited else None
    deadline = time.time() + timeout
    pause = 0.0005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.time() > deadline:
            return None
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


def read_tail(fd, limit, masker):
    """The last `limit` bytes of a command's output as text, its secrets masked on the raw bytes
    first (a secret cut at the boundary, or split inside a multi-byte character, never shows)."""
    size = os.fstat(fd).st_size
    os.lseek(fd, size - masker.window(size, limit), 0)
    chunks = []
    while True:
        block = os.read(fd, 65536)
        if not block:
            break
        chunks.append(block)
    return masker.tail_bytes(b"".join(chunks), limit)


def version_of(release):
    """A release id's version: `<version>-<8 hex digits of the config hash>` (core/release.py)."""
    version, _, suffix = release.rpartition("-")
    if version and len(suffix) == 8 and all(c in "0123456789abcdef" for c in suffix):
        return version
    return release


def fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


ASPECT_WORDS = {"missing": "missing", "added": "not in the release", "type": "of another type",
                "content": "changed", "link": "pointing elsewhere", "mode": "mode changed", "owner": "owner changed",
                "group": "group changed"}


def describe_differences(differences, limit=4):
    """The release's differing entries in one problem sentence (the plan lists them all)."""
    shown = ["%s (%s)" % (path, ASPECT_WORDS.get(aspect, aspect)) for path, aspect in differences[:limit]]
    more = " and %d more" % (len(differences) - limit) if len(differences) > limit else ""
    return "its files differ from the release: %s%s" % (", ".join(shown), more)


# A systemd unit's commands, the same in roles/golive (tasks/restart.yml, stop.yml, verify.yml). The
# restart clears a start limit first: a crash-looping release the health check gave up on leaves
# its unit "failed", and the rollback's restart of the good release must not be refused for it.
# A failed restart shows the unit's journal, where the service said why.
UNIT_RESTART = ("systemctl reset-failed %(unit)s 2>/dev/null; systemctl restart %(unit)s || "
                "{ code=$?; journalctl -u %(unit)s -n 10 --no-pager -o cat; exit $code; }")
UNIT_REPORT = "systemctl is-active %(unit)s; journalctl -u %(unit)s -n 10 --no-pager -o cat"


def unit_report_text(unit, output):
    """UNIT_REPORT's output in words: "; UNIT is STATE; its journal ends: LINE | LINE" ("" when it
    printed nothing). The host agent's failed health check and golive provision's failed unit say it."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        return ""
    return "; %s is %s; its journal ends: %s" % (unit, lines[0], " | ".join(lines[1:]) or "(empty)")


def unit_command(unit, action):
    if action == "restart":
        return UNIT_RESTART % {"unit": unit}
    return "systemctl %s %s" % (action, unit)


class Agent:
    def __init__(self, request, stream):
        self.request = request
        self.stream = stream
        self.root = request["root"]
        self.state_dir = os.path.join(self.root, ".golive")
        self.releases_dir = os.path.join(self.root, "releases")
        self.meta_dir = os.path.join(self.state_dir, "releases")
        self.artifacts_dir = os.path.join(self.state_dir, "artifacts")
        self.lock_dir = os.path.join(self.state_dir, "lock")
        self.current_link = os.path.join(self.root, "current")
        self.token = request.get("token")
        # Every form of every secret the controller knows for this host: command output (a hook
        # that prints a config file) is masked with them as it is read, and so is the ledger.
        self.masker = Masker(request.get("mask"))
        self.vars = {}  # values steps hand to later steps: previous, target
        self.steps = []
        self.fault_fired = False
        self.release_repairs = None  # what the last look at the live release found to repair
        self._keep = None  # where this request keeps what it replaces (keep_dir)

    def fault_point(self, point):
        """Test hook (golive.adapters.faultpoints): at the armed point, announce it and wait for the controller
        to be killed; then carry on exactly as after a real crash. A no-op in normal requests."""
        if not point or self.fault_fired or self.request.get("fault_point") != point:
            return
        self.fault_fired = True
        message = ("golive-fault-point %s\n" % point).encode()
        deadline = time.time() + 30
        try:
            while time.time() < deadline:  # a write fails (EPIPE) once sshd has lost the controller
                sys.stdout.buffer.write(message)
                sys.stdout.buffer.flush()
                message = b"\n"
                time.sleep(0.02)
        except OSError:
            pass

    # -- helpers ---------------------------------------------------------------------------

    def resolve(self, value):
        if isinstance(value, str) and value.startswith("$"):
            return self.vars.get(value[1:])
        return value

    def current(self):
        try:
            target = os.readlink(self.current_link)
        except OSError:
            return None
        return os.path.basename(target.rstrip("/"))

    def meta_path(self, release):
        return os.path.join(self.meta_dir, release + ".json")

    def meta(self, release):
        return read_json(self.meta_path(release)) if release else None

    def run_path(self, release):
        return os.path.join(self.meta_dir, release + ".run.json")

    def run_spec(self, release):
        """How to run a release: its service commands, health check and hooks, from its run file
        (0600: rendered with the host's variables, they may hold secrets); a release deployed before
        golive kept them apart has them in its metadata."""
        if not release:
            return {}
        spec = read_json(self.run_path(release))
        return spec if spec is not None else (self.meta(release) or {})

    def releases(self):
        """Complete release directories with their metadata, newest first (golive.core.rollback.order_key):
        by the deploy sequence the controller assigned, never by this host's clock; releases an older
        golive wrote (no `seq`) after every sequenced one, by created_at then id."""
        found = []
        try:
            names = os.listdir(self.releases_dir)
        except OSError:
            return found
        for name in names:
            if name.endswith(".partial") or name.startswith("."):
                continue
            meta = self.meta(name) or {"id": name, "state": "unknown", "created_at": ""}
            found.append(meta)
        found.sort(key=lambda m: (sequence(m) or 0, m.get("created_at") or "", m.get("id") or ""), reverse=True)
        return found

    def rollback_intent(self):
        return read_json(os.path.join(self.state_dir, "rollback.json"))

    def run_command(self, command, cwd=None, timeout=120, env_extra=None, fault_point=None):
        """Run a shell command, output into an unnamed file (a daemon keeping a pipe open could
        never hang us). posix_spawn avoids importing subprocess on the hot path."""
        env = dict(os.environ)
        env.update(env_extra or {})
        env["GOLIVE_CWD"] = cwd if cwd and os.path.isdir(cwd) else "/"
        argv = ["/bin/sh", "-c", 'cd "$GOLIVE_CWD" || exit 127\n' + command]
        output = os.open("/tmp", os.O_TMPFILE | os.O_RDWR, 0o600) if hasattr(os, "O_TMPFILE") else None
        if output is None or not hasattr(os, "posix_spawn"):
            return self.run_command_portable(argv, env, timeout, fault_point)
        try:
            devnull = os.open(os.devnull, os.O_RDONLY)
            try:
                pid = os.posix_spawn(argv[0], argv, env, file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, output, 1),
                    (os.POSIX_SPAWN_DUP2, output, 2)])
            except OSError as error:
                return 127, str(error)
            finally:
                os.close(devnull)
            self.fault_point(fault_point)
            code = wait_for(pid, timeout)
            text = read_tail(output, OUTPUT_LIMIT, self.masker)
        finally:
            os.close(output)
        if code is None:
            return -1, text + "\n(timed out after %ss)" % timeout
        return code, text

    def run_command_portable(self, argv, env, timeout, fault_point=None):
        """The same with subprocess, for hosts whose Python or kernel lacks posix_spawn/O_TMPFILE."""
        import subprocess
        import tempfile

        with tempfile.TemporaryFile() as output:
            try:
                process = subprocess.Popen(argv, stdin=open(os.devnull), stdout=output, stderr=subprocess.STDOUT,
                                           env=env, close_fds=True)
            except OSError as error:
                return 127, str(error)
            self.fault_point(fault_point)
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = None
            text = read_output_tail(output, OUTPUT_LIMIT, self.masker)
        if code is None:
            return -1, text + "\n(timed out after %ss)" % timeout
        return code, text

    def run_logged(self, command, what, cwd=None, timeout=120, env_extra=None, fault_point=None):
        """run_command, the whole output kept (secret values masked) in a 0600 file under
        .golive/logs/; (exit code, output tail, log path)."""
        logs = os.path.join(self.state_dir, "logs")
        if not os.path.isdir(logs):
            os.makedirs(logs, 0o700)
        log = os.path.join(logs, "%s-%s.log" % (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), what))
        raw = "%s.raw-%d" % (log, os.getpid())
        os.close(os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        env = dict(env_extra or {}, GOLIVE_OUTPUT=raw)
        code, note = self.run_command('exec >>"$GOLIVE_OUTPUT" 2>&1\n' + command, cwd=cwd, timeout=timeout,
                                      env_extra=env, fault_point=fault_point)
        try:
            with open(raw, "rb") as handle:
                data = handle.read()
                text = self.masker.tail_bytes(data, len(data))  # masked on the raw bytes, then decoded
        finally:
            os.unlink(raw)
        write_atomic(log, text.encode("utf-8"), 0o600)
        return code, text[-OUTPUT_LIMIT:] + (note if code in (-1, 127) else ""), log

    def command_env(self, release, direction):
        """What every service command, health command and hook is told (docs/design.md), so that a
        command need not put values into its own text."""
        context = self.request.get("context") or {}
        return {
            "GOLIVE_RELEASE": release or "",
            "GOLIVE_RELEASE_DIR": os.path.join(self.releases_dir, release) if release else "",
            "GOLIVE_PREVIOUS_RELEASE": self.vars.get("previous") or "",
            "GOLIVE_VERSION": version_of(release or ""),
            "GOLIVE_APP_ROOT": self.root,
            "GOLIVE_CONFIG_DIR": context.get("config_dir") or "",
            "GOLIVE_CUSTOMER": context.get("customer") or "",
            "GOLIVE_ENVIRONMENT": context.get("environment") or "",
            "GOLIVE_HOST": context.get("host") or "",
            "GOLIVE_DIRECTION": direction or "deploy",
        }

    # -- steps -----------------------------------------------------------------------------

    def step_lock(self, args):
        """Take the lock: a directory holding owner.json, renamed into place in one step, so that
        no other run ever sees the lock without its owner (a bare mkdir, then writing the owner,
        let a run started at the same instant see an empty lock and call it stale)."""
        # exist_ok: two runs locking a fresh host at the same instant both create .golive
        os.makedirs(self.state_dir, 0o755, exist_ok=True)
        owner = dict(args["owner"], token=self.token, since=utc_now())
        prepared = "%s.new-%d" % (self.lock_dir, os.getpid())
        remove_tree(prepared)
        os.mkdir(prepared, 0o700)
        try:
            write_atomic(os.path.join(prepared, "owner.json"), to_json(owner).encode(), 0o600)
            if os.path.lexists(self.lock_dir):  # rename() would replace an empty directory
                raise OSError(errno.EEXIST, "locked")
            os.rename(prepared, self.lock_dir)
        except OSError as error:
            remove_tree(prepared)
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            holder = read_json(os.path.join(self.lock_dir, "owner.json"), {}) or {"incomplete": True}
            if self.token and holder.get("token") == self.token:
                return {"locked": True, "already": True}  # this run took it in an earlier round trip
            holder.pop("token", None)
            stale = args.get("takeover")
            if not stale or holder != stale:
                raise LockHeld(holder) from None
            return self.take_over(owner, holder, args.get("entry"))
        return {"locked": True}

    def take_over(self, owner, stale, entry):
        """Replace the lock of a run the controller has proved dead (its own machine, its process
        gone: golive.adapters.locks.takeover_allowed), and record that in the ledger. Under an
        flock on .golive, which roles/golive's takeover script takes too: of two runs taking over
        the same stale lock one does, and the other then finds the winner's lock, never removes it."""
        import fcntl

        guard = os.open(self.state_dir, os.O_RDONLY)
        try:
            fcntl.flock(guard, fcntl.LOCK_EX)
            holder = read_json(os.path.join(self.lock_dir, "owner.json"), {}) or {"incomplete": True}
            holder.pop("token", None)
            if holder != stale:  # taken over (or cleared and taken) since we looked
                raise LockHeld(holder)
            prepared = "%s.new-%d" % (self.lock_dir, os.getpid())
            away = "%s.stale-%d" % (self.lock_dir, os.getpid())
            remove_tree(prepared)
            os.mkdir(prepared, 0o700)
            write_atomic(os.path.join(prepared, "owner.json"), to_json(owner).encode(), 0o600)
            os.rename(self.lock_dir, away)
            try:
                os.rename(prepared, self.lock_dir)
            except OSError:  # a run took the free lock in between: it is that run's now
                remove_tree(prepared)
                remove_tree(away)
                held = read_json(os.path.join(self.lock_dir, "owner.json"), {}) or {"incomplete": True}
                held.pop("token", None)
                raise LockHeld(held) from None
            remove_tree(away)
        finally:
            os.close(guard)
        if entry:
            self.append_ledger(dict(entry, time=utc_now(), result="ok", stale_lock=stale))
        return {"locked": True, "took_over": stale}

    def step_unlock(self, args):
        owner = read_json(os.path.join(self.lock_dir, "owner.json"), {}) or {}
        if not os.path.isdir(self.lock_dir):
            return {"unlocked": False, "detail": "no lock"}
        if not args.get("force") and owner.get("token") != self.token:
            raise StepError("the lock belongs to another run; not removed")
        owner.pop("token", None)
        # Rename first: the lock disappears whole, never seen half removed (without its owner).
        released = "%s.released-%d" % (self.lock_dir, os.getpid())
        os.rename(self.lock_dir, released)
        remove_tree(released)
        return {"unlocked": True, "holder": owner}

    def step_state(self, args):
        current = self.current()
        lock = read_json(os.path.join(self.lock_dir, "owner.json")) if os.path.isdir(self.lock_dir) else None
        if lock is not None:
            lock.pop("token", None)
        elif os.path.isdir(self.lock_dir):
            lock = {"incomplete": True}
        meta = self.meta(current)
        artifact = args.get("artifact")
        cached = False
        if artifact:
            sidecar = read_json(os.path.join(self.artifacts_dir, artifact["name"] + ".json"), {}) or {}
            cached = (sidecar.get("sha256") == artifact["sha256"]
                      and os.path.isfile(os.path.join(self.artifacts_dir, artifact["name"])))
        service_running = None
        status_command = (self.run_spec(current).get("service") or {}).get("status") \
            if args.get("service_status") and current else None
        if status_command:
            code, _ = self.run_command(status_command, cwd=os.path.join(self.releases_dir, current),
                                       timeout=args.get("status_timeout", 10))
            service_running = code == 0
        live = {}
        for dest in args.get("live_files", []):
            path = os.path.join(self.releases_dir, current or "-", "config", dest["dest"])
            entry = {"exists": os.path.isfile(path)}
            if entry["exists"]:
                with open(path, "rb") as handle:
                    data = handle.read()
                entry["sha256"] = sha256(data).hexdigest()
                if dest.get("text") and len(data) < 200000:
                    entry["text"] = data.decode("utf-8", "replace")
            live[dest["dest"]] = entry
        links = self.config_link_problems(args.get("config_dir"), [d["dest"] for d in args.get("live_files", [])])
        try:
            partials = [n for n in os.listdir(self.releases_dir) if n.endswith(".partial")]
        except OSError:
            partials = []
        try:
            usage = os.statvfs(self.root if os.path.isdir(self.root) else "/")
            disk_free = usage.f_bavail * usage.f_frsize
        except OSError:
            disk_free = None
        desired = args.get("desired_release")
        if desired:
            self.vars["desired_live_problems"] = self.desired_live_problems(desired, args)
            if current != desired and args.get("release_files") is not None \
                    and os.path.isdir(os.path.join(self.releases_dir, desired)):
                # a kept release is checked as the live one is before anything switches to it:
                # a hand edit of its files is repaired first (step_repair), never made live
                self.release_repairs = self.release_differences(desired, args)
        return {
            "current": current,
            "current_meta": meta,
            "desired_live_problems": self.vars.get("desired_live_problems"),
            "release_repairs": self.release_repairs,
            "releases": self.releases(),
            "artifact_cached": cached,
            "lock": lock,
            "service_running": service_running,
            "config_link_problems": links,
            "live_files": live,
            "partials": partials,
            "disk_free": disk_free,
            "hostname": os.uname()[1],
            "platform": host_platform(),
            "live_since": self.live_since(current) if args.get("history") else None,
            "last_check": self.last_check(current) if args.get("history") else None,
            "rollback": self.rollback_intent(),
            "live_health": self.live_health(current, meta) if args.get("live_health") else None,
        }

    def desired_live_problems(self, release, args):
        """Why the desired release is not simply live and healthy here (empty: nothing to do): its
        every file, config link and the service, as a repair would put them back."""
        current = self.current()
        if current != release:
            return ["%s is live, not %s" % (current, release) if current else "no release is live"]
        problems = []
        meta = self.meta(release) or {}
        if meta.get("state") != "good":
            problems.append("release %s is %s, not verified good" % (release, meta.get("state", "unknown")))
        if args.get("release_files") is not None:
            differences = self.release_differences(release, args)
            self.release_repairs = differences
            if differences:
                problems.append(describe_differences(differences))
        else:
            for item in args.get("live_files", []):
                path = os.path.join(self.releases_dir, release, "config", item["dest"])
                if not os.path.isfile(path) or sha256_file(path) != item.get("sha256"):
                    problems.append("config file %s differs from the rendered one" % item["dest"])
        target = os.readlink(self.current_link)
        if target != os.path.join("releases", release):
            problems.append("current points to %s, not releases/%s" % (target, release))
        dests = [d["dest"] for d in args.get("live_files", [])]
        problems.extend(self.config_link_problems(args.get("config_dir"), dests))
        problems.extend(self.service_problems(release, meta, args.get("status_timeout", 10)))
        return problems

    def service_problems(self, release, meta, status_timeout=10):
        """The service must run this release with its config: its /health answer says so (and then no
        status command needs to run); without a health URL, the status command must succeed."""
        spec = self.run_spec(release)
        health = spec.get("health") or {}
        if health.get("url"):
            ok, why = self.health_once(release, meta, "deploy", want_release=release)
            return [] if ok else ["the service does not answer as release %s: %s" % (release, why)]
        status_command = (spec.get("service") or {}).get("status")
        if status_command:
            code, _ = self.run_command(status_command, cwd=os.path.join(self.releases_dir, release),
                                       timeout=status_timeout)
            if code != 0:
                return ["the service is not running"]
        return []

    def release_differences(self, release, args):
        """[(path, aspect)] where the release directory differs from args["release_files"] (what the
        controller says it should hold), by content: every file of the right size is hashed."""
        wanted = args["release_files"]
        base = os.path.join(self.releases_dir, release)
        try:
            actual, _ = scan_release(base, args.get("ignore") or (), hashes=False)
        except OSError:
            return [(".", "missing")]
        candidates = [(path, entry) for path, entry in actual.items() if entry["type"] == "file"
                      and (wanted.get(path) or {}).get("type") == "file" and wanted[path].get("size") == entry["size"]]
        # OpenSSL's sha256 beyond a megabyte: its import costs ~3 ms, it hashes several times faster
        digest = fast_sha256 if sum(e["size"] for _, e in candidates) > CHUNK else sha256
        for path, entry in candidates:
            entry["sha256"] = sha256_file(os.path.join(base, path), digest())
        return release_differences(wanted, actual, os.geteuid(), os.getegid())

    def step_repair(self, args):
        """Put the release's files back as the controller says they should be (the live release, or a
        kept one before a deploy switches to it): the artifact's
        files (from the cached artifact, its sha256 checked first), the rendered config (in the
        request), the shared links, every mode and owner. What is replaced or removed is moved to
        .golive/repaired/<time>-<release>/ first: nothing is lost, and the evidence is kept. Run
        again after an interruption, it finds and repairs what is left."""
        release = args["release"]
        base = os.path.join(self.releases_dir, release)
        wanted = args["release_files"]
        keep = os.path.join(self.state_dir, "repaired", "%s-%s" % (time.strftime("%Y%m%dT%H%M%S"), release))
        self._keep = keep
        aspects = {}
        for path, aspect in self.release_differences(release, args):
            aspects.setdefault(path, []).append(aspect)
        sources = RepairSources(self, args)
        done = []
        gone = []  # moved away, with everything below them
        try:
            for path in sorted(aspects, key=lambda p: (p != ".", p.split("/"))):
                found = aspects[path]
                if "missing" not in found and any(path.startswith(g + "/") for g in gone):
                    continue
                self.check_parents(base, path)
                full = base if path == "." else os.path.join(base, path)
                want = wanted.get(path)
                if "added" in found or "type" in found:
                    self.set_aside(full, os.path.join(keep, path if path != "." else "release-directory"))
                    gone.append(path)
                    if "added" in found:
                        done.append([path, "moved to %s" % keep])
                        continue
                if "added" in found or "type" in found or "missing" in found:
                    self.create(full, want, path, sources, keep)
                    done.append([path, "restored"])
                elif want["type"] == "file" and set(found) & set(["content", "owner", "group"]):
                    self.write_file(full, want, path, sources, keep)
                    done.append([path, "restored"])
                elif want["type"] == "link":
                    symlink_atomic(want["link"], full)
                    done.append([path, "relinked"])
                else:
                    if "mode" in found:
                        os.chmod(full, int(want["mode"], 8))
                        done.append([path, "mode %s" % want["mode"]])
                    if "owner" in found or "group" in found:
                        try:
                            os.lchown(full, os.geteuid(), os.getegid())
                        except PermissionError:
                            raise StepError("%s belongs to another user; only root can give it back" % full) from None
                        done.append([path, "owner given back"])
        finally:
            sources.close()
        fsync_dir(base)
        left = self.release_differences(release, args)
        if left:
            raise StepError("repaired %d entries, but %s" % (len(done), describe_differences(left)))
        return {"repaired": done, "kept": keep if os.path.isdir(keep) else None}

    def keep_dir(self, release):
        """Where a repair keeps what it replaces or removes: .golive/repaired/<time>-<release>/ (0700:
        it may hold a secret file), one per run."""
        if self._keep is None:
            self._keep = os.path.join(self.state_dir, "repaired", "%s-%s" % (time.strftime("%Y%m%dT%H%M%S"), release))
        if not os.path.isdir(self._keep):
            os.makedirs(os.path.dirname(self._keep), 0o755, exist_ok=True)
            os.mkdir(self._keep, 0o700)
        return self._keep

    @staticmethod
    def move_out(path, destination):
        """Move `path` to `destination`, across file systems if need be."""
        if not os.path.isdir(os.path.dirname(destination)):
            os.makedirs(os.path.dirname(destination), 0o700)
        try:
            os.rename(path, destination)
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            import shutil

            shutil.move(path, destination)

    def check_parents(self, base, path):
        """Refuse to write through a link: every directory above `path` must be a real directory."""
        parts = path.split("/")[:-1] if path != "." else []
        for depth in range(1, len(parts) + 1):
            parent = os.path.join(base, *parts[:depth])
            if os.path.islink(parent) or not os.path.isdir(parent):
                raise StepError("%s is not a directory: the repair does not write through it" % parent)

    def set_aside(self, full, destination):
        """Move an entry into the repair's keep directory (the same file system: one rename)."""
        if not os.path.lexists(full):
            return
        self.keep_dir(None)
        if not os.path.isdir(os.path.dirname(destination)):
            os.makedirs(os.path.dirname(destination), 0o700)
        os.rename(full, destination)

    def create(self, full, want, path, sources, keep):
        if want["type"] == "dir":
            os.mkdir(full, 0o700)
            os.chmod(full, int(want["mode"], 8))
        elif want["type"] == "link":
            os.symlink(want["link"], full)
        else:
            self.write_file(full, want, path, sources, keep)

    def write_file(self, full, want, path, sources, keep):
        """Write one file as the release has it, then swap it in with one rename; the file it
        replaces stays in `keep` (a second name for it: the swap itself stays atomic)."""
        temporary = "%s.golive-repair-%d" % (full, os.getpid())
        if os.path.lexists(temporary):
            os.unlink(temporary)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as handle:
            sources.copy(path, handle)
            handle.flush()
            os.fchmod(handle.fileno(), int(want["mode"], 8))
            os.fsync(handle.fileno())
        if os.path.lexists(full):
            self.keep_dir(None)
            aside = os.path.join(keep, path)
            if not os.path.isdir(os.path.dirname(aside)):
                os.makedirs(os.path.dirname(aside), 0o700)
            try:
                os.link(full, aside)
            except OSError:  # no second name allowed (protected_hardlinks): moved instead
                os.rename(full, aside)
        os.rename(temporary, full)

    def step_finish_if_unchanged(self, args):
        """No-change runs cost one round trip: record 'unchanged', release the lock, stop here."""
        # The lock is held since `state` looked, so its answer still holds: look only once.
        problems = self.vars.pop("desired_live_problems", None)
        if problems is None:
            problems = self.desired_live_problems(args["desired_release"], args)
        if problems:
            return {"unchanged": False}
        self.vars["result"] = "unchanged"
        self.step_record({"entry": args["entry"]})
        if not args.get("keep_lock"):  # the run's leader keeps its lock until the whole run ends
            self.step_unlock({})
        self.vars["stop"] = True
        return {"unchanged": True}

    def config_link_problems(self, config_dir, dests):
        problems = []
        for dest in dests:
            link = os.path.join(config_dir, dest)
            expected = os.path.join(self.current_link, "config", dest)
            if not os.path.islink(link):
                problems.append("%s is not a symlink into %s" % (link, expected) if os.path.exists(link)
                                else "%s is missing" % link)
            elif os.readlink(link) != expected:
                problems.append("%s points to %s, not %s" % (link, os.readlink(link), expected))
        return problems

    def step_upload(self, args):
        """Receive the artifact from the request stream, hashing as it arrives."""
        if not os.path.isdir(self.artifacts_dir):
            os.makedirs(self.artifacts_dir, 0o755)
        name, size, expected = args["artifact"], args["size"], args["sha256"]
        final = os.path.join(self.artifacts_dir, name)
        partial = final + ".part"
        digest = fast_sha256()
        remaining = size
        try:
            with open(partial, "wb") as handle:
                while remaining > 0:
                    block = self.stream.read(min(CHUNK, remaining))
                    if not block:
                        raise StepError("upload of %s ended early (%d of %d bytes)" % (name, size - remaining, size))
                    digest.update(block)
                    handle.write(block)
                    remaining -= len(block)
                handle.flush()
                os.fsync(handle.fileno())
            if digest.hexdigest() != expected:
                raise StepError("checksum mismatch for %s on the host: got %s, expected %s"
                                % (name, digest.hexdigest()[:16], expected[:16]))
            os.rename(partial, final)
        except BaseException:
            if os.path.exists(partial):
                os.unlink(partial)
            raise
        write_atomic(final + ".json", to_json({"sha256": expected, "size": size}).encode())
        self.vars["uploaded_sha256"] = expected
        return {"bytes": size}

    def step_unpack(self, args):
        release = args["release"]
        artifact = os.path.join(self.artifacts_dir, args["artifact"])
        # Checked before anything is unpacked; an upload in this same batch has just hashed it.
        actual = self.vars.get("uploaded_sha256") or sha256_file(artifact, fast_sha256())
        if actual != args["sha256"]:
            raise StepError("checksum mismatch for cached %s: got %s, expected %s; nothing unpacked"
                            % (args["artifact"], actual[:16], args["sha256"][:16]))
        partial = os.path.join(self.releases_dir, release + ".partial")
        if not os.path.isdir(self.releases_dir):
            os.makedirs(self.releases_dir, 0o755)
        for name in os.listdir(self.releases_dir):
            if name.endswith(".partial"):
                remove_tree(os.path.join(self.releases_dir, name))
        import tarfile

        try:
            archive = open_declared(artifact, args["artifact"])
        except ArchiveRefused:
            self.forget_artifact(artifact)
            raise
        except (tarfile.TarError, OSError, EOFError) as error:
            raise StepError("%s is not a readable tar archive: %s" % (args["artifact"], error)) from None
        with archive:
            try:
                checked = check_archive(archive.getmembers(), args["max_members"], args["max_bytes"])
                check_complete(archive)
                entries = manifest_of(archive, checked, args.get("product"), args.get("version"))
                compare_manifest(entries, checked)
            except (tarfile.TarError, EOFError) as error:
                self.forget_artifact(artifact)
                raise StepError("%s is not a readable tar archive: %s" % (args["artifact"], error)) from None
            except ArchiveRefused:
                self.forget_artifact(artifact)
                raise
            half = len(checked) // 2
            try:
                extract_checked(archive, checked[:half], partial, entries=entries)
                self.fault_point("unpack:half")
                extract_checked(archive, checked[half:], partial, resume=True, entries=entries)
            except ArchiveRefused:
                # Content that differs from the manifest: nothing of it stays, on disk or in the cache.
                remove_tree(partial)
                self.forget_artifact(artifact)
                raise
        return {"members": len(checked)}

    def forget_artifact(self, artifact):
        """A refused archive is not kept in the cache, where a later run would find it ready."""
        for path in (artifact, artifact + ".json"):
            if os.path.exists(path):
                os.unlink(path)

    def rewrite_config(self, release, files):
        """Repair a live release's config files one atomic rename each (hand edits undone)."""
        import base64

        config = os.path.join(self.releases_dir, release, "config")
        for item in files:
            write_atomic(os.path.join(config, item["dest"]), base64.b64decode(item["data"]), int(item["mode"], 8))
        return {"release": release, "rewritten": [f["dest"] for f in files]}

    def step_configure(self, args):
        """Write rendered config and shared links into the partial release, then publish it."""
        release = args["release"]
        if args.get("in_place"):
            return self.rewrite_config(release, args["files"])
        partial = os.path.join(self.releases_dir, release + ".partial")
        final = os.path.join(self.releases_dir, release)
        config = os.path.join(partial, "config")
        if os.path.lexists(config):
            raise StepError("the artifact contains a 'config' entry, which golive reserves for rendered config")
        os.mkdir(config, 0o755)
        import base64

        for item in args["files"]:
            data = base64.b64decode(item["data"])
            fd = os.open(os.path.join(config, item["dest"]), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(os.path.join(config, item["dest"]), int(item["mode"], 8))
        for name in args.get("shared", []):
            shared = os.path.join(self.root, "shared", name)
            if not os.path.isdir(shared):
                os.makedirs(shared, 0o755)
            link = os.path.join(partial, name)
            if os.path.isdir(link) and not os.path.islink(link):
                remove_tree(link)
            elif os.path.lexists(link):
                os.unlink(link)
            os.symlink(os.path.join("..", "..", "shared", name), link)
        meta = dict(args["meta"], id=release, state="unverified", created_at=utc_now())
        if not os.path.isdir(self.meta_dir):
            os.makedirs(self.meta_dir, 0o755)
        # The run file first: a release with metadata always has what it needs to run.
        write_atomic(self.run_path(release), to_json(args.get("run") or {}).encode(), 0o600)
        write_atomic(self.meta_path(release), to_json(meta).encode())
        fsync_dir(partial)
        if os.path.isdir(final):
            remove_tree(final)  # an earlier run's release that never went live
        os.rename(partial, final)
        fsync_dir(self.releases_dir)
        return {"release": release}

    def step_hook(self, args):
        """A hook of golive.yml, in the directory of the release it concerns, with the documented
        GOLIVE_* context (README "Hooks"), its timeout, and its whole output in a 0600 log."""
        command = args.get("command")
        if args.get("meta_of"):
            command = (self.run_spec(self.resolve(args["meta_of"])).get("hooks") or {}).get(args["name"])
        if not command:
            return {"skipped": True}
        release = self.resolve(args.get("release"))
        env = self.command_env(release, args.get("direction"))
        for key, value in (args.get("env") or {}).items():
            env[key] = self.resolve(value) or ""
        code, output, log = self.run_logged(command, args["name"], cwd=os.path.join(self.releases_dir, release or ""),
                                            timeout=args.get("timeout", 600), env_extra=env)
        self.vars.setdefault("logs", {})[args["name"]] = log  # the ledger links it, failed or not
        if code != 0:
            raise StepError("%s hook failed (exit %d): %s (whole output: %s)"
                            % (args["name"], code, self.masker.tail(output.strip(), 500), log))
        return {"output": self.masker.tail(output, 500), "log": log}

    def step_cutover(self, args):
        release = self.resolve(args["release"])
        if not release or not os.path.isdir(os.path.join(self.releases_dir, release)):
            raise StepError("release %s is not on this host" % release)
        previous = self.current()
        if "previous" not in self.vars:
            self.vars["previous"] = previous
        meta = self.meta(release) or {}
        config_dir = args["config_dir"]
        if not os.path.isdir(config_dir):
            os.makedirs(config_dir, 0o755)
        for item in meta.get("config_files", []):
            link = os.path.join(config_dir, item["dest"])
            expected = os.path.join(self.current_link, "config", item["dest"])
            if os.path.islink(link) and os.readlink(link) == expected:
                continue
            if os.path.exists(link) and not os.path.islink(link):
                # kept, but not in config_dir: an application may read every file there
                self.move_out(link, os.path.join(self.keep_dir(release), "config_dir", item["dest"]))
            symlink_atomic(expected, link)
        symlink_atomic(os.path.join("releases", release), self.current_link)
        fsync_dir(self.root)
        return {"from": previous, "to": release}

    def service_command(self, release, action):
        service = self.run_spec(release).get("service") or {}
        if service.get("systemd_unit"):
            return unit_command(service["systemd_unit"], action)
        if action == "restart" and not service.get("restart") and service.get("start"):
            return "%s; %s" % (service.get("stop") or "true", service["start"])
        return service.get(action)

    def step_restart(self, args):
        self.run_service(self.resolve(args.get("release")) or self.current(), "restart", args)
        return {}

    def run_service(self, release, action, args):
        """Run the release's own `action` command (restart, stop) in its directory, as the step asks."""
        command = self.service_command(release, action)
        if not command:
            raise StepError("release %s declares no %s command" % (release, action))
        code, output = self.run_command(command, cwd=os.path.join(self.releases_dir, release),
                                        timeout=args.get("timeout", 120),
                                        env_extra=self.command_env(release, args.get("direction")),
                                        fault_point="%s:running" % args.get("name", action))
        if code != 0:
            raise StepError("%s failed (exit %d): %s" % (action, code, self.masker.tail(output.strip(), 500)))

    def step_withdraw(self, args):
        """After a failed first install (no earlier release to go back to): stop the failed release's
        service with its own stop command (it runs through `current`, so before the link goes) and
        remove `current`, so that the host runs nothing, as before its first deploy; the release
        stays on the host, marked bad. A release that never became live is left as it is; a stop
        that fails leaves `current` on the failed release (its service may still run) and says so."""
        release = self.resolve(args.get("release"))
        if not release or self.current() != release:
            return {"withdrawn": False, "live": self.current()}
        try:
            self.run_service(release, "stop", dict(args, name=args.get("name", "withdraw")))
        except StepError as error:
            raise StepError("%s; %s stays live, its service may still run" % (error, release)) from None
        os.unlink(self.current_link)
        fsync_dir(self.root)
        self.vars["withdrawn"] = release
        return {"withdrawn": True, "stopped": release, "live": None}

    def step_verify(self, args):
        release = self.resolve(args.get("release")) or self.current()
        meta = self.meta(release) or {}
        health = self.run_spec(release).get("health") or {}
        attempts = max(1, int(health.get("retries", 1)))
        interval = float(health.get("interval", 0.2))
        last = "no attempt"
        for attempt in range(attempts):
            if attempt:
                time.sleep(interval)
            ok, last = self.health_once(release, meta, args.get("direction") or "deploy", extra=args.get("expect"))
            self.fault_point("%s:running" % args.get("name", "verify"))
            if ok:
                return {"attempts": attempt + 1}
        raise StepError("health check failed after %d attempts: %s%s" % (attempts, last, self.unit_report(release)))

    def unit_report(self, release):
        """Why a systemd unit does not serve, for a failed health check: "; UNIT is STATE; its journal
        ends: LINE | LINE" (the service's own words, masked). Nothing for a command-form service."""
        unit = (self.run_spec(release).get("service") or {}).get("systemd_unit")
        if not unit:
            return ""
        code, output = self.run_command(UNIT_REPORT % {"unit": unit}, timeout=30)
        return unit_report_text(unit, output)

    def health_once(self, release, meta, direction="deploy", want_release=None, extra=None):
        """One health check of a release, by the rule every engine applies (shared.health_problem):
        (healthy, why not). The answer is masked on its raw bytes before anything reads or cuts it;
        with want_release, a service that says it serves another release is not healthy either;
        `extra`: more values the answer must report (the schema version a migration left)."""
        health = self.run_spec(release).get("health") or {}
        expected = health_expected(meta, release)
        if extra:
            expected.update(extra)
            health = dict(health, expect=health_expect(health) + [k for k in extra if k not in health_expect(health)])
        timeout = float(health.get("timeout", 2))
        if health.get("url"):
            try:
                code, raw = http_get(health["url"], timeout)
                body = raw.decode("utf-8", "replace")  # parsed as it came; what is quoted of it is masked first
            except Exception as error:  # refused, timeout, not HTTP: all mean "not healthy yet"
                code, body = None, self.masker.text(str(getattr(error, "reason", error)))
        elif health.get("command"):
            code, body = self.run_command(health["command"], cwd=os.path.join(self.releases_dir, release),
                                          timeout=timeout, env_extra=self.command_env(release, direction))
        else:
            return False, "release %s has no health check in its run file" % release
        problem = self.masker.text(health_problem(health, expected, code, body, self.masker))
        if not problem and want_release and code is not None:
            try:
                report = from_json(body)
            except ValueError:
                report = None
            served = report.get("release") if isinstance(report, dict) else None
            if served not in (None, want_release):  # still serving another release
                problem = "health reports release %s, expected %s" % (to_json(served), to_json(want_release))
        return not problem, problem

    def live_health(self, release, meta):
        """What the live release's service answers now: one attempt of its verify's check."""
        if not release or not meta:
            return None
        ok, problem = self.health_once(release, meta)
        return {"ok": ok, "problem": problem}

    def step_serve(self, args):
        """A host already on the rollback's target: verify it; when the service does not serve it (a
        rollback killed between the cutover and the restart), restart it and verify again."""
        try:
            return dict(self.step_verify(args), restarted=False)
        except StepError as error:
            first = str(error)
        self.step_restart(dict(args, name="restart"))
        self.vars["result"] = "ok"
        return dict(self.step_verify(args), restarted=True, before=first)

    def step_mark(self, args):
        """A release's verification state; `good` also clears a rollback's mark (the release is live and
        verified again) and, for a deploy, takes the run's deploy sequence (`seq`)."""
        release = self.resolve(args["release"])
        meta = self.meta(release)
        if meta is None:
            return {"skipped": True}
        meta["state"] = args["state"]
        meta["%s_at" % args["state"]] = utc_now()
        if args["state"] == "good":
            meta.pop("rolled_back_at", None)
            if args.get("seq") is not None:
                meta["seq"] = args["seq"]
        write_atomic(self.meta_path(release), to_json(meta).encode())
        return {"release": release, "state": args["state"]}

    def step_mark_left(self, args):
        """Mark the release a rollback left: a plain rollback never goes back to it (--to still can)."""
        release = self.resolve(args["release"])
        meta = self.meta(release)
        if meta is None or release == self.vars.get("target"):
            return {"skipped": True}
        meta["rolled_back_at"] = utc_now()
        write_atomic(self.meta_path(release), to_json(meta).encode())
        return {"release": release}

    def step_select_rollback(self, args):
        """Find on this host the release the environment rolls back to (golive.core.rollback chose it on
        the leader), and record the intent before anything switches, so that a re-run, by either
        engine, completes this rollback instead of choosing again."""
        current = self.current()
        releases = self.releases()
        kept = [rollback_summary(m) for m in releases]
        earlier = self.rollback_intent()
        wanted = args["target"]
        same_id = [m for m in releases if m.get("id") == wanted["release"]]
        if wanted.get("match") == "id":
            candidates = same_id
        else:
            version = [m for m in releases if m.get("version") == wanted["version"]]
            same_run = [m for m in version if wanted.get("seq") is not None and sequence(m) == wanted["seq"]]
            live = [m for m in version if m.get("id") == current]
            candidates = []
            for meta in same_id + same_run + live + version:
                if meta not in candidates:
                    candidates.append(meta)
        found = {"kept": kept, "intent": earlier, "from": current}
        if not current:
            # Nothing live (never deployed here, or a first install withdrawn): nothing to go back
            # from. Left as it is: no intent, no ledger entry, its lock given back (golive.core.rollback).
            self.vars["result"] = "nothing_live"
            if not args.get("keep_lock"):
                self.step_unlock({})
            self.vars["stop"] = True
            return dict(found, target=None, nothing_live=True, already=False)
        if not candidates:
            self.vars["choice"] = found
            raise StepError("release %s is not kept on this host (kept: %s)"
                            % (wanted["version"] if wanted.get("match") != "id" else wanted["release"],
                               kept_text(kept, current)))
        usable = [m for m in candidates if m.get("state") != "bad"]
        if not usable and not args.get("force"):
            self.vars["choice"] = found
            raise StepError("release %s is marked bad (it failed verification); use --force to roll back to it"
                            % candidates[0]["id"])
        target = (usable or candidates)[0]
        already = target["id"] == current
        self.vars["target"] = target["id"]
        self.vars["previous"] = None if already else current
        if already:
            self.vars["already"] = True
            self.vars["result"] = "unchanged"
        continuing = earlier if earlier and earlier.get("target") == target["id"] else None
        intent = {"run": self.run_id(), "target": target["id"], "version": target.get("version"),
                  "seq": sequence(target), "from": (continuing or {}).get("from") if already else current,
                  "epoch": max([sequence(m) or 0 for m in releases] or [0]), "started_at": utc_now()}
        intent.update(args.get("by") or {})  # operator, controller, engine
        # how a rollback that changes the database does it (restore, down), kept while it is completed
        database = args.get("database") or (continuing or {}).get("database")
        if database:
            intent["database"] = database
        os.makedirs(self.state_dir, 0o755, exist_ok=True)
        write_atomic(os.path.join(self.state_dir, "rollback.json"), to_json(intent).encode())
        return dict(found, target=target["id"], version=target.get("version"), already=already)

    def run_id(self):
        """The run's public name: the start of its lock token's sha256 (the token itself is never shown)."""
        return sha256((self.token or "").encode()).hexdigest()[:12]

    def step_finish_rollback(self, args):
        """On the leader, once every host of the run ended on the target: the rollback is finished, so
        the next plain rollback goes further back instead of completing this one."""
        path = os.path.join(self.state_dir, "rollback.json")
        intent = read_json(path)
        if not intent or intent.get("run") != self.run_id():
            return {"finished": False}
        intent["finished_at"] = utc_now()
        write_atomic(path, to_json(intent).encode())
        return {"finished": True}

    def step_prune(self, args):
        """Retention: keep the `keep` newest releases, and never delete the live one, the two newest
        good ones, the one the run started from (`protect`), the target of the next plain rollback
        (golive.core.rollback.choose), or the target and left release of an unfinished rollback."""
        keep = max(2, int(args.get("keep", 5)))
        releases = self.releases()
        current = self.current()
        good = [m["id"] for m in releases if m.get("state") == "good"]
        protected = set([current] + good[:2] + [r for r in args.get("protect", []) if r])
        ids = [m.get("id") for m in releases]
        older = releases[ids.index(current) + 1:] if current in ids else releases
        protected.update([m["id"] for m in older if m.get("state") == "good" and not m.get("rolled_back_at")][:1])
        intent = self.rollback_intent() or {}
        if not intent.get("finished_at") and intent.get("epoch") == max([sequence(m) or 0 for m in releases] or [0]):
            protected.update(r for r in (intent.get("target"), intent.get("from")) if r)
        kept = []
        removed = []
        for meta in releases:
            if meta["id"] in protected or len(kept) < keep:
                kept.append(meta["id"])
                continue
            remove_tree(os.path.join(self.releases_dir, meta["id"]))
            for path in (self.meta_path(meta["id"]), self.run_path(meta["id"])):
                if os.path.exists(path):
                    os.unlink(path)
            removed.append(meta["id"])
        wanted = set((self.meta(r) or {}).get("artifact") for r in kept)
        if os.path.isdir(self.artifacts_dir):
            for name in os.listdir(self.artifacts_dir):
                base = name[:-5] if name.endswith(".json") else name
                if base not in wanted and not name.endswith(".part"):
                    os.unlink(os.path.join(self.artifacts_dir, name))
        return {"removed": removed, "kept": kept}

    def step_record(self, args):
        entry = dict(args["entry"])
        entry.setdefault("time", utc_now())
        entry["steps"] = dict(entry.get("steps") or {}, **dict((s["name"], s["seconds"]) for s in self.steps))
        logs = dict((s["name"], s["data"]["log"]) for s in self.steps if isinstance(s.get("data"), dict)
                    and s["data"].get("log"))
        logs.update(self.vars.get("logs") or {})
        if logs:
            entry["logs"] = dict(entry.get("logs") or {}, **logs)
        entry["result"] = self.vars.get("result", entry.get("result", "ok"))
        if self.vars.get("error") and "detail" not in entry:
            entry["detail"] = self.vars["error"]
        for key in ("release", "previous_release"):
            entry[key] = self.resolve(entry.get(key))
        for key in ("detail", "reason"):  # free text: masked before it is written
            if isinstance(entry.get(key), str):
                entry[key] = self.masker.text(entry[key])
        target_meta = self.meta(entry.get("release")) or {}
        for key in ("version", "artifact_sha256", "config_hash"):
            if not entry.get(key) and target_meta.get(key):
                entry[key] = target_meta[key]
        self.append_ledger(entry)
        return {"result": entry["result"]}

    def append_ledger(self, entry):
        if not os.path.isdir(self.state_dir):
            os.makedirs(self.state_dir, 0o755)
        line = (to_json(entry) + "\n").encode("utf-8")
        # 0600: a hook's output may echo a value the controller did not know was secret
        fd = os.open(os.path.join(self.state_dir, "ledger.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_mode & 0o077:  # a ledger written before golive made it private
                os.fchmod(fd, 0o600)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def ledger_tail(self, limit):
        path = os.path.join(self.state_dir, "ledger.jsonl")
        try:
            with open(path, "rb") as handle:
                handle.seek(0, 2)
                size = handle.tell()
                handle.seek(max(0, size - 262144))
                lines = handle.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []
        entries = []
        for line in lines[-limit:] if limit else lines:
            try:
                entries.append(from_json(line))
            except ValueError:
                continue
        return entries

    def live_since(self, release):
        """The ledger entry that made the live release live."""
        for entry in reversed(self.ledger_tail(200)):
            if entry.get("release") == release and entry.get("action") in ("deploy", "rollback") \
                    and entry.get("result") in ("ok", "unchanged"):
                return entry
        return None

    def last_check(self, release):
        """The newest `golive check` run recorded for a release (the promotion gate reads it)."""
        for entry in reversed(self.ledger_tail(200)):
            if entry.get("release") == release and entry.get("action") == "check":
                return entry
        return None

    def step_history(self, args):
        return {"entries": self.ledger_tail(int(args.get("limit", 20)))}

    def step_cleanup(self, args):
        """After a failed install: remove the partial release so nothing half-made stays."""
        release = args.get("release")
        partial = os.path.join(self.releases_dir, "%s.partial" % release)
        if os.path.isdir(partial):
            remove_tree(partial)
        return {}

    # -- batch -----------------------------------------------------------------------------

    def report_step(self, name, state, seconds=None):
        """A progress line for the controller (golive.adapters.remote.PROGRESS): the step running, then
        how it ended, as it happens, when the request asks for them; the answer stays the last line."""
        if not self.request.get("report_steps"):
            return
        event = {"step": name, "state": state}
        if seconds is not None:
            event["seconds"] = seconds
        try:
            sys.stdout.buffer.write(("golive-progress %s\n" % to_json(event)).encode())
            sys.stdout.buffer.flush()
        except (OSError, ValueError):
            pass  # the controller is gone: the batch goes on

    def run_step(self, step):
        name = step.get("name") or step["op"]
        self.fault_point("%s:before" % name)
        self.report_step(name, "running")
        started = time.time()
        record = {"name": name, "op": step["op"], "ok": True}
        try:
            record["data"] = getattr(self, "step_" + step["op"])(step)
        except LockHeld as held:
            record.update(ok=False, error="locked", holder=held.holder)
        except (StepError, ArchiveRefused) as error:
            record.update(ok=False, error=str(error))
        except OSError as error:
            record.update(ok=False, error=self.os_error_text(error))
        except Exception as error:  # a defect in the agent: still report it, never leave half a batch
            record.update(ok=False, error="%s: %s" % (type(error).__name__, error))
        record["seconds"] = round(time.time() - started, 4)
        if "error" in record:
            # An error may quote anything (a command's output, a URL, a path): masked before it goes
            # anywhere. Command output in a step's data was masked as it was read (run_command);
            # the rest of the data is the host's own state (ids, hashes, states), left as it is.
            record["error"] = self.masker.text(record["error"])
        self.steps.append(record)
        self.report_step(name, "ok" if record["ok"] else "failed", record["seconds"])
        self.fault_point("%s:done" % name)
        return record

    def os_error_text(self, error):
        """An OSError in the operator's words: the path and the cause; for a full disk, what is free.
        (The controller prefixes the step's name.)"""
        text = error.strerror or str(error)
        if getattr(error, "filename", None):
            text = "%s: %s" % (error.filename, text)
        if error.errno == errno.ENOSPC:
            try:
                usage = os.statvfs(self.root)
                text += " (%.1f MB free of %.1f MB under %s)" % (usage.f_bavail * usage.f_frsize / 1048576.0,
                                                                usage.f_blocks * usage.f_frsize / 1048576.0,
                                                                self.root)
            except OSError:
                pass
        return text

    def run(self):
        failed = None
        for step in self.request.get("steps", []):
            if not self.wanted(step):
                continue  # e.g. a rollback on a host already on its target: nothing to switch
            record = self.run_step(step)
            if not record["ok"]:
                failed = record
                break
            if self.vars.get("stop"):
                return self.answer(None)
        if failed is not None:
            self.vars["error"] = "%s: %s" % (failed["name"], failed.get("error"))
            self.vars["result"] = "failed"
            recovery = [s for s in self.request.get("on_failure", [])
                        if failed["name"] in s.get("after", [failed["name"]]) and self.wanted(s)]
            if recovery:
                # Every recovery step runs, even after one of them failed: each failure is reported.
                outcomes = [self.run_step(s)["ok"] for s in recovery]
                # a first install withdrawn (step_withdraw) went back to nothing: it failed, not rolled back
                self.vars["result"] = "rolled_back" if all(outcomes) and not self.vars.get("withdrawn") else "failed"
        elif self.request.get("result"):
            self.vars["result"] = self.request["result"]
        if failed is not None and failed["op"] == "lock":
            return self.answer(failed)  # the host belongs to another run: touch nothing more
        for step in self.request.get("always", []):
            self.run_step(step)
        return self.answer(failed)

    def wanted(self, step):
        """A step runs unless the var its `unless` names is set, and only when the one `when` names is."""
        if step.get("unless") and self.vars.get(step["unless"]):
            return False
        return not step.get("when") or bool(self.vars.get(step["when"]))

    def answer(self, failed):
        return {
            "schema": SCHEMA,
            "ok": failed is None,
            "failed_step": failed["name"] if failed else None,
            "error": failed.get("error") if failed else None,
            "holder": failed.get("holder") if failed else None,
            "result": self.vars.get("result", "ok"),
            "current": self.current(),
            "vars": self.vars,
            "steps": self.steps,
        }


def sequence(meta):
    """A release's deploy sequence (golive.core.rollback.sequence), or None for one an older golive wrote."""
    value = meta.get("seq")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def rollback_summary(meta):
    """What choosing a rollback target needs of a release (golive.core.rollback.Kept.summary)."""
    return {"id": meta.get("id"), "version": meta.get("version"), "state": meta.get("state"), "seq": sequence(meta),
            "created_at": meta.get("created_at"), "rolled_back_at": meta.get("rolled_back_at")}


def kept_text(kept, current):
    """'1.2 (live), 1.1, 1.0 (bad)' (golive.core.rollback.RollbackFacts.kept_text)."""
    shown = []
    for item in kept:
        notes = [n for n in ("live" if item["id"] == current else "", "bad" if item.get("state") == "bad" else "",
                             "rolled back from" if item.get("rolled_back_at") and item["id"] != current else "") if n]
        text = (item.get("version") or item["id"]) + (" (%s)" % ", ".join(notes) if notes else "")
        if text not in shown:
            shown.append(text)
    return ", ".join(shown) or "none"


class RepairSources(object):
    """Where a repair takes a file's bytes from: a rendered config file from the request, any other
    file from the cached artifact (opened once, its sha256 checked and every member checked as an
    unpack checks them, only when a code file needs restoring)."""

    def __init__(self, agent, args):
        self.agent = agent
        self.args = args
        self.rendered = dict(("config/" + f["dest"], f["data"]) for f in args.get("files", []))
        self.archive = None
        self.members = None

    def copy(self, path, handle):
        if path in self.rendered:
            import base64

            handle.write(base64.b64decode(self.rendered[path]))
            return
        if self.members is None:
            self.open()
        member = self.members.get(path)
        if member is None:
            raise StepError("%s is not in the artifact %s: nothing to restore it from" % (path, self.args["artifact"]))
        source = self.archive.extractfile(member)
        while True:
            block = source.read(CHUNK)
            if not block:
                break
            handle.write(block)

    def open(self):
        import tarfile

        agent, args = self.agent, self.args
        artifact = os.path.join(agent.artifacts_dir, args["artifact"])
        if not os.path.isfile(artifact):
            raise StepError("the artifact %s is not on the host: deploy again, the plan uploads it" % args["artifact"])
        actual = agent.vars.get("uploaded_sha256") or sha256_file(artifact, fast_sha256())
        if actual != args["sha256"]:
            raise StepError("checksum mismatch for cached %s: got %s, expected %s; nothing restored from it"
                            % (args["artifact"], actual[:16], args["sha256"][:16]))
        self.archive = tarfile.open(artifact, "r:*")
        self.members = dict(check_archive(self.archive.getmembers(), args["max_members"], args["max_bytes"]))

    def close(self):
        if self.archive is not None:
            self.archive.close()


class LockHeld(Exception):
    def __init__(self, holder):
        Exception.__init__(self, "locked")
        self.holder = holder


def main(raw_request, stream, agent_class=None):
    # Finish the batch even if the controller disappears: a cutover is never left half done.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    os.umask(0o022)
    request = from_json(raw_request.decode("utf-8"))
    result = (agent_class or Agent)(request, stream).run()
    payload = to_json(result).encode("utf-8")
    try:
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
    except OSError:
        pass  # the controller is gone; the ledger has the outcome


if __name__ == "golive_agent" and not globals().get("GOLIVE_EXTENDED"):  # dbagent.py extends this program
    main(REQUEST, STREAM)  # noqa: F821 - provided by the bootstrap
