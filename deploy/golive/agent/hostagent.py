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
    from golive.agent.archive import ArchiveRefused, check_archive, extract_checked
    from golive.agent.shared import CHUNK, fast_sha256, from_json, http_get, read_json, sha256, sha256_file, to_json

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


def read_tail(fd, limit):
    chunks = []
    while True:
        block = os.read(fd, 65536)
        if not block:
            break
        chunks.append(block)
    return b"".join(chunks)[-limit:].decode("utf-8", "replace")


def fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        self.vars = {}  # values steps hand to later steps: previous, target
        self.steps = []
        self.fault_fired = False

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

    def releases(self):
        """Complete release directories with their metadata, newest first."""
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
        found.sort(key=lambda m: (m.get("created_at", ""), m.get("id", "")), reverse=True)
        return found

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
            os.lseek(output, 0, 0)
            text = read_tail(output, OUTPUT_LIMIT)
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
            output.seek(0)
            text = output.read()[-OUTPUT_LIMIT:].decode("utf-8", "replace")
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
                text = self.masked(handle.read().decode("utf-8", "replace"))
        finally:
            os.unlink(raw)
        write_atomic(log, text.encode("utf-8"), 0o600)
        return code, text[-OUTPUT_LIMIT:] + (note if code in (-1, 127) else ""), log

    def command_env(self, release):
        return {
            "GOLIVE_RELEASE": release or "",
            "GOLIVE_RELEASE_DIR": os.path.join(self.releases_dir, release) if release else "",
            "GOLIVE_PREVIOUS_RELEASE": self.vars.get("previous") or "",
            "GOLIVE_APP_ROOT": self.root,
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
            raise LockHeld(holder) from None
        return {"locked": True}

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
        status_command = ((meta or {}).get("service") or {}).get("status")
        if args.get("service_status") and current and status_command:
            code, _ = self.run_command(status_command, cwd=os.path.join(self.releases_dir, current), timeout=10)
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
        return {
            "current": current,
            "current_meta": meta,
            "desired_live_problems": self.vars.get("desired_live_problems"),
            "releases": self.releases(),
            "artifact_cached": cached,
            "lock": lock,
            "service_running": service_running,
            "config_link_problems": links,
            "live_files": live,
            "partials": partials,
            "disk_free": disk_free,
            "hostname": os.uname()[1],
            "live_since": self.live_since(current) if args.get("history") else None,
            "last_check": self.last_check(current) if args.get("history") else None,
            "health": self.live_health(current, meta) if args.get("health") else None,
        }

    def live_health(self, release, meta):
        """What the service answers now (one attempt): status shows this, not the stored state."""
        if not release or not meta:
            return None
        health = meta.get("health") or {}
        if not (health.get("url") or health.get("command")):
            return None
        expected = {"version": meta.get("version"), "config_hash": meta.get("config_hash")}
        ok, detail = self.health_once(health, expected, float(health.get("timeout", 2)), release)
        return {"ok": ok, "detail": detail}

    def desired_live_problems(self, release, args):
        """Why the desired release is not simply live and healthy here (empty: nothing to do)."""
        current = self.current()
        if current != release:
            return ["%s is live, not %s" % (current, release) if current else "no release is live"]
        problems = []
        meta = self.meta(release) or {}
        if meta.get("state") != "good":
            problems.append("release %s is %s, not verified good" % (release, meta.get("state", "unknown")))
        for item in args.get("live_files", []):
            path = os.path.join(self.releases_dir, release, "config", item["dest"])
            if not os.path.isfile(path) or sha256_file(path) != item.get("sha256"):
                problems.append("config file %s differs from the rendered one" % item["dest"])
        dests = [d["dest"] for d in args.get("live_files", [])]
        problems.extend(self.config_link_problems(args.get("config_dir"), dests))
        status_command = (meta.get("service") or {}).get("status")
        if status_command:
            code, _ = self.run_command(status_command, cwd=os.path.join(self.releases_dir, release), timeout=10)
            if code != 0:
                problems.append("the service is not running")
        return problems

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
            archive = tarfile.open(artifact, "r:*")
        except (tarfile.TarError, OSError) as error:
            raise StepError("%s is not a readable tar archive: %s" % (args["artifact"], error)) from None
        with archive:
            try:
                checked = check_archive(archive.getmembers(), args["max_members"], args["max_bytes"])
            except ArchiveRefused:
                # A hostile archive is not kept in the cache, where a later run would find it ready.
                for path in (artifact, artifact + ".json"):
                    if os.path.exists(path):
                        os.unlink(path)
                raise
            half = len(checked) // 2
            extract_checked(archive, checked[:half], partial)
            self.fault_point("unpack:half")
            extract_checked(archive, checked[half:], partial, resume=True)
        return {"members": len(checked)}

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
            command = ((self.meta(self.resolve(args["meta_of"])) or {}).get("hooks") or {}).get(args["name"])
        if not command:
            return {"skipped": True}
        release = self.resolve(args.get("release"))
        env = self.command_env(release)
        for key, value in (args.get("env") or {}).items():
            env[key] = self.resolve(value) or ""
        code, output, log = self.run_logged(command, args["name"], cwd=os.path.join(self.releases_dir, release or ""),
                                            timeout=args.get("timeout", 600), env_extra=env)
        self.vars.setdefault("logs", {})[args["name"]] = log  # the ledger links it, failed or not
        if code != 0:
            raise StepError("%s hook failed (exit %d): %s (whole output: %s)"
                            % (args["name"], code, output.strip()[-500:], log))
        return {"output": output[-500:], "log": log}

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
                os.rename(link, "%s.golive-replaced-%s" % (link, time.strftime("%Y%m%d%H%M%S")))
            symlink_atomic(expected, link)
        symlink_atomic(os.path.join("releases", release), self.current_link)
        fsync_dir(self.root)
        return {"from": previous, "to": release}

    def service_command(self, release, action):
        meta = self.meta(release) or {}
        service = meta.get("service") or {}
        if service.get("systemd_unit"):
            return "systemctl %s %s" % (action, service["systemd_unit"])
        if action == "restart" and not service.get("restart") and service.get("start"):
            return "%s; %s" % (service.get("stop") or "true", service["start"])
        return service.get(action)

    def step_restart(self, args):
        release = self.resolve(args.get("release")) or self.current()
        command = self.service_command(release, "restart")
        if not command:
            raise StepError("release %s declares no restart command" % release)
        code, output = self.run_command(command, cwd=os.path.join(self.releases_dir, release),
                                        timeout=args.get("timeout", 120), env_extra=self.command_env(release),
                                        fault_point="%s:running" % args.get("name", "restart"))
        if code != 0:
            raise StepError("restart failed (exit %d): %s" % (code, output.strip()[-500:]))
        return {}

    def step_verify(self, args):
        release = self.resolve(args.get("release")) or self.current()
        meta = self.meta(release) or {}
        health = meta.get("health") or {}
        expected = {"version": meta.get("version"), "config_hash": meta.get("config_hash")}
        expected.update(args.get("expect") or {})  # the schema version the database is at
        attempts = max(1, int(health.get("retries", 1)))
        timeout = float(health.get("timeout", 2))
        interval = float(health.get("interval", 0.2))
        last = "no attempt"
        for attempt in range(attempts):
            if attempt:
                time.sleep(interval)
            ok, last = self.health_once(health, expected, timeout, release)
            self.fault_point("%s:running" % args.get("name", "verify"))
            if ok:
                return {"attempts": attempt + 1}
        raise StepError("health check failed after %d attempts: %s" % (attempts, last))

    def health_once(self, health, expected, timeout, release):
        if health.get("url"):
            try:
                status, raw = http_get(health["url"], timeout)
            except Exception as error:  # refused, timeout, not HTTP: all mean "not healthy yet"
                return False, "%s: %s" % (health["url"], getattr(error, "reason", error))
            body = raw.decode("utf-8", "replace")
            if not 200 <= status < 300:
                return False, "%s: HTTP %d" % (health["url"], status)
        else:
            code, body = self.run_command(health["command"], cwd=os.path.join(self.releases_dir, release),
                                          timeout=timeout, env_extra=self.command_env(release))
            if code != 0:
                return False, "health command exit %d: %s" % (code, body.strip()[-200:])
        try:
            report = from_json(body)
        except ValueError:
            return (False, "health answer is not JSON: %r" % body[:80]) if health.get("url") else (True, "")
        for key, value in expected.items():
            if value and report.get(key) != value:
                return False, "health reports %s %r, expected %r" % (key, report.get(key), value)
        return True, ""

    def step_mark(self, args):
        release = self.resolve(args["release"])
        meta = self.meta(release)
        if meta is None:
            return {"skipped": True}
        meta["state"] = args["state"]
        meta["%s_at" % args["state"]] = utc_now()
        write_atomic(self.meta_path(release), to_json(meta).encode())
        return {"release": release, "state": args["state"]}

    def step_select_rollback(self, args):
        """Choose the rollback target on the host, from its own releases."""
        current = self.current()
        version = args.get("version")
        candidates = [m for m in self.releases() if m.get("id") != current]
        if version:
            named = [m for m in candidates if m.get("version") == version or m.get("id") == version]
            if not named:
                kept = ", ".join(sorted(set(m.get("version", m["id"]) for m in candidates))) or "none"
                raise StepError("release %s is not kept on this host (kept: %s)" % (version, kept))
            good = [m for m in named if m.get("state") != "bad"]
            if not good and not args.get("force"):
                raise StepError("release %s is marked bad (it failed verification); use --force to roll back to it"
                                % version)
            target = (good or named)[0]
        else:
            good = [m for m in candidates if m.get("state") == "good"]
            if not good:
                raise StepError("no previous good release to roll back to")
            target = good[0]
        self.vars["target"] = target["id"]
        self.vars["previous"] = current
        return {"target": target["id"], "version": target.get("version"), "from": current}

    def step_prune(self, args):
        keep = max(2, int(args.get("keep", 5)))
        releases = self.releases()
        current = self.current()
        good = [m["id"] for m in releases if m.get("state") == "good"]
        protected = set([current] + good[:2] + [r for r in args.get("protect", []) if r])
        kept = []
        removed = []
        for meta in releases:
            if meta["id"] in protected or len(kept) < keep:
                kept.append(meta["id"])
                continue
            remove_tree(os.path.join(self.releases_dir, meta["id"]))
            if os.path.exists(self.meta_path(meta["id"])):
                os.unlink(self.meta_path(meta["id"]))
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
        target_meta = self.meta(entry.get("release")) or {}
        for key in ("version", "artifact_sha256", "config_hash"):
            if not entry.get(key) and target_meta.get(key):
                entry[key] = target_meta[key]
        if not os.path.isdir(self.state_dir):
            os.makedirs(self.state_dir, 0o755)
        line = (to_json(entry) + "\n").encode("utf-8")
        fd = os.open(os.path.join(self.state_dir, "ledger.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return {"result": entry["result"]}

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

    def run_step(self, step):
        name = step.get("name") or step["op"]
        self.fault_point("%s:before" % name)
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
        if self.request.get("mask"):
            record = self.masked(record)
        self.steps.append(record)
        self.fault_point("%s:done" % name)
        return record

    def masked(self, value):
        """`value` with the secret values the controller named masked: command output (a hook that
        prints a config file, say) reaches step errors, the answer and the ledger only this way."""
        if isinstance(value, str):
            for secret in sorted(self.request.get("mask") or (), key=len, reverse=True):
                if secret and secret in value:
                    value = value.replace(secret, "********")
            return value
        if isinstance(value, dict):
            return dict((key, self.masked(item)) for key, item in value.items())
        if isinstance(value, list):
            return [self.masked(item) for item in value]
        return value

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
                        if failed["name"] in s.get("after", [failed["name"]])]
            if recovery:
                # Every recovery step runs, even after one of them failed: each failure is reported.
                outcomes = [self.run_step(s)["ok"] for s in recovery]
                self.vars["result"] = "rolled_back" if all(outcomes) else "failed"
        elif self.request.get("result"):
            self.vars["result"] = self.request["result"]
        if failed is not None and failed["op"] == "lock":
            return self.answer(failed)  # the host belongs to another run: touch nothing more
        for step in self.request.get("always", []):
            self.run_step(step)
        return self.answer(failed)

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
