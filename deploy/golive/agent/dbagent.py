"""golive database agent: the environment-level steps, run once per environment.

On the environment's database host it runs PostgreSQL's own client programs against the server
(pg_dump, pg_restore, psql): read the database's state, back it up, apply a release's migrations,
restore or rehearse a backup, run down-migrations, prune old backups. On an application host it
stops the service before a migration and runs a vendor's own migrate command. Every step runs in
the host agent's batch machinery (golive.agent PARTS["dbagent"] sends shared, archive, hostagent
and this file as one program): the same masking of secret values, fault points, ledger and
keep-running-when-the-controller-dies.

Layout on the database host (under the application root, docs/design.md):

    .golive/backups/<id>.dump    pg_dump -Fc, 0600, verified with pg_restore --list
    .golive/backups/<id>.json    its metadata: schema state, release, statistics snapshot, restores
    .golive/logs/<stamp>-<what>.log   the whole output of a migration, restore, command (0600, masked)
    .golive/ledger.jsonl         backup / migrate / restore / rehearse / down entries

The password travels in the request (over SSH, to a host that holds it anyway), is written only to
a 0600 password file that lives for the request, and is masked in everything recorded or answered.
"""

import os
import sys
import time

if __name__ != "golive_agent":  # on the controller; on a host the earlier parts are sent ahead of this
    from golive.agent.hostagent import Agent, StepError, utc_now, wait_status, write_atomic
    from golive.agent.hostagent import main as agent_main
    from golive.agent.shared import fast_sha256, from_json, read_json, sha256_file, to_json
else:
    agent_main = main  # noqa: F821 - hostagent's, sent ahead of this file

ADVISORY_LOCK = 7061626  # pg_advisory_xact_lock key of golive's migrations ("golive" in spirit)
TAIL = 4000
HISTORY_COLUMNS = ("version", "name", "checksum", "kind", "release", "applied_at", "applied_by", "engine",
                   "seconds", "reversible")


def quote_ident(name):
    return '"%s"' % name.replace('"', '""')


def quote_literal(value):
    if value is None:
        return "NULL"
    return "'%s'" % str(value).replace("'", "''")


def history_ddl(table):
    """The history table; the Ansible engine (roles/golive) creates exactly this one."""
    return ("CREATE TABLE IF NOT EXISTS %s (version text PRIMARY KEY, name text NOT NULL, "
            "checksum text NOT NULL, kind text NOT NULL, release text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL, engine text NOT NULL, "
            "seconds double precision, reversible boolean NOT NULL DEFAULT false);" % quote_ident(table))


def explain(output, connection):
    """A PostgreSQL client's failure in the operator's words (one line)."""
    text = output.strip()
    where = "%s:%s" % (connection.get("host"), connection.get("port"))
    lowered = text.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return ("the database server at %s refused the password of user %s (golive.yml database.connection."
                "password, e.g. db_password in the vault)" % (where, connection.get("user")))
    if "does not exist" in lowered and "database" in lowered and "fatal" in lowered:
        return "database %s does not exist on the server at %s" % (connection.get("name"), where)
    if "role" in lowered and "does not exist" in lowered and "fatal" in lowered:
        return "user %s does not exist on the database server at %s" % (connection.get("user"), where)
    for marker in ("connection refused", "could not connect", "timeout expired", "no route to host",
                   "could not translate host name", "network is unreachable", "server closed the connection"):
        if marker in lowered:
            line = [x for x in text.splitlines() if marker in x.lower()] or [text]
            return "cannot reach the database server at %s: %s" % (where, line[0].strip()[-200:])
    if "lock timeout" in lowered:
        return "could not get a lock within lock_timeout: %s" % _error_line(text)
    if "statement timeout" in lowered:
        return "a statement ran past its timeout: %s" % _error_line(text)
    return _error_line(text) or "failed without a message"


def _error_line(text):
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    errors = [x for x in lines if "ERROR" in x or "FATAL" in x or "error:" in x]
    return ((errors or lines or [""])[0])[-300:]


class DatabaseAgent(Agent):
    def __init__(self, request, stream):
        Agent.__init__(self, request, stream)
        self.db = request.get("database") or {}
        self.connection = self.db.get("connection") or {}
        self.backup_dir = self.db.get("backup_dir") or os.path.join(self.state_dir, "backups")
        self.logs_dir = os.path.join(self.state_dir, "logs")
        self.passfile = None
        self.scratch = None

    def run(self):
        try:
            return Agent.run(self)
        finally:
            self.cleanup()

    # -- running PostgreSQL's client programs ------------------------------------------------

    def program(self, name):
        directory = self.db.get("bin") or ""
        return os.path.join(directory, name) if directory else name

    def password_file(self):
        """A 0600 password file for this request only (libpq reads it; nothing else sees the password)."""
        if self.passfile is None:
            import tempfile

            self.scratch = tempfile.mkdtemp(prefix="golive-db-")
            path = os.path.join(self.scratch, "pgpass")
            c = self.connection

            def field(value):
                return str(value).replace("\\", "\\\\").replace(":", "\\:")

            line = "%s:%s:*:%s:%s\n" % (field(c.get("host", "")), field(c.get("port", "")), field(c.get("user", "")),
                                        field(c.get("password", "")))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(line)
            self.passfile = path
        return self.passfile

    def cleanup(self):
        if self.scratch:
            import shutil

            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = self.passfile = None

    def pg_env(self, application, options=""):
        c = self.connection
        env = dict(os.environ)
        for key in list(env):
            if key.startswith("PG"):
                del env[key]  # only what the request says
        env.update({"PGHOST": str(c.get("host", "")), "PGPORT": str(c.get("port", "")),
                    "PGUSER": str(c.get("user", "")), "PGDATABASE": str(c.get("name", "")),
                    "PGPASSFILE": self.password_file(),
                    "PGCONNECT_TIMEOUT": str(int(self.db.get("connect_timeout") or 10)),
                    "PGAPPNAME": application, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"})
        if options:
            env["PGOPTIONS"] = options
        return env

    def spawn(self, argv, timeout, stdin_data=None, application="golive", options="", fault_point=None,
              cwd=None, env_extra=None):
        """Run a program with its whole output (stdout and stderr) kept; (exit code, output text).
        Exit -1 after the timeout: the program is killed and its server session ended."""
        import subprocess
        import tempfile

        env = self.pg_env(application, options)
        env.update(env_extra or {})
        with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as stdin:
            if stdin_data is not None:
                stdin.write(stdin_data.encode("utf-8") if not isinstance(stdin_data, bytes) else stdin_data)
                stdin.seek(0)
            try:
                process = subprocess.Popen(argv, stdin=stdin if stdin_data is not None else open(os.devnull),
                                           stdout=output, stderr=subprocess.STDOUT, env=env, close_fds=True,
                                           cwd=cwd or "/")
            except OSError as error:
                return 127, "%s: %s" % (argv[0], error.strerror or error)
            self.fault_point(fault_point)
            status = wait_status(process.pid, timeout)
            if status is None:
                process.kill()
                process.wait()
                self.end_sessions(application)
                code = -1
            else:
                process.returncode = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
                code = process.returncode
            output.seek(0)
            raw = output.read()
            text = self.masker.tail_bytes(raw, len(raw))  # masked on the raw bytes, then decoded
        if code == -1:
            text += "\n(timed out after %ss: stopped, and its database session ended)" % timeout
        return code, text

    def masked(self, text):
        return self.masker.text(text)

    def end_sessions(self, application):
        """End the server sessions a killed client left (a statement runs on until it next talks to
        its client otherwise)."""
        sql = ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
               "AND pid <> pg_backend_pid();" % quote_literal(application))
        import subprocess

        try:
            subprocess.call([self.program("psql"), "-X", "-q", "-d", "postgres", "-c", sql],
                            env=self.pg_env("golive-cleanup"), stdout=open(os.devnull, "w"),
                            stderr=subprocess.STDOUT, timeout=30)
        except Exception:  # best effort: the statement timeout ends it too
            pass

    def psql(self, sql, database=None, timeout=None, application="golive", options="", fault_point=None):
        """Run SQL (ON_ERROR_STOP); (exit code, output). Tuples only, unaligned."""
        argv = [self.program("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"]
        if database:
            argv += ["-d", database]
        return self.spawn(argv, timeout or self.timeout("connect") * 6, stdin_data=sql, application=application,
                          options=options, fault_point=fault_point)

    def query(self, sql, database=None):
        """The JSON value a query selects, or StepError in the operator's words."""
        code, output = self.psql(sql, database)
        if code != 0:
            raise StepError(explain(output, self.connection))
        text = output.strip()
        try:
            return from_json(text) if text else None
        except ValueError:
            raise StepError("unexpected answer from psql: %r" % text[:200]) from None

    def timeout(self, name):
        return float((self.db.get("timeouts") or {}).get(name) or {"connect": 10, "lock": 5}.get(name, 3600))

    def log_file(self, what):
        if not os.path.isdir(self.logs_dir):
            os.makedirs(self.logs_dir, 0o700)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return os.path.join(self.logs_dir, "%s-%s-%s.log" % (stamp, self.db.get("environment") or "db", what))

    def append_log(self, path, text):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, self.masked(text).encode("utf-8", "replace"))
        finally:
            os.close(fd)

    def progress(self, text):
        """A line the controller shows while a long step runs (it reads the answer from the last line)."""
        try:
            sys.stdout.buffer.write(("golive-progress %s\n" % to_json({"text": self.masked(text)[:200]})).encode())
            sys.stdout.buffer.flush()
        except OSError:
            pass  # the controller is gone; the step goes on

    # -- reading -------------------------------------------------------------------------

    def history(self, database=None):
        """The history table's rows (empty when it does not exist yet)."""
        table = self.db.get("history_table") or "golive_schema_history"
        exists = self.query("SELECT to_json(to_regclass(%s) IS NOT NULL);" % quote_literal(table), database)
        if not exists:
            return []
        rows = self.query("SELECT coalesce(json_agg(h ORDER BY h.version), '[]') FROM (SELECT %s FROM %s) h;"
                          % (", ".join(HISTORY_COLUMNS), quote_ident(table)), database)
        return rows or []

    def stats(self):
        """Rows inserted, updated, deleted per table so far (PostgreSQL's statistics), with what tells
        whether two snapshots are comparable: the database's oid and when its statistics were reset."""
        return self.query(
            "SELECT json_build_object('database_oid', (SELECT oid FROM pg_database WHERE datname = current_database()),"
            " 'stats_reset', (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()),"
            " 'at', now(), 'tables', coalesce((SELECT json_object_agg(schemaname || '.' || relname,"
            " json_build_array(n_tup_ins, n_tup_upd, n_tup_del)) FROM pg_stat_user_tables), '{}'));")

    def backups(self):
        found = []
        try:
            names = os.listdir(self.backup_dir)
        except OSError:
            return found
        for name in sorted(names):
            if name.endswith(".json") and not name.startswith("."):
                meta = read_json(os.path.join(self.backup_dir, name))
                if meta:
                    meta["present"] = os.path.isfile(os.path.join(self.backup_dir, meta.get("file", "")))
                    found.append(meta)
        return found

    def disk_free(self, path):
        probe = path
        while probe and not os.path.isdir(probe):
            probe = os.path.dirname(probe)
        try:
            usage = os.statvfs(probe or "/")
        except OSError:
            return None
        return usage.f_bavail * usage.f_frsize

    def step_db_probe(self, args):
        """Everything a plan needs and nothing changed: reachable with these credentials, the
        history, size, statistics, free space for a backup, the backups kept, other databases golive
        made (restores, replaced ones); `schema` adds pg_dump --schema-only."""
        info = self.query(
            "SELECT json_build_object('server_version', current_setting('server_version'), 'database_oid',"
            " (SELECT oid FROM pg_database WHERE datname = current_database()), 'size',"
            " pg_database_size(current_database()), 'databases', (SELECT coalesce(json_agg(datname ORDER BY datname),"
            " '[]') FROM pg_database WHERE datname LIKE current_database() || '\\_\\_golive%%'),"
            " 'sessions', (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()), 'comment', shobj_description((SELECT oid FROM pg_database"
            " WHERE datname = current_database()), 'pg_database'));")
        info["restored"] = self.restore_mark(info.pop("comment", None))
        info["history"] = self.history()
        info["stats"] = self.stats()
        info["backup_dir"] = self.backup_dir
        info["disk_free"] = self.disk_free(self.backup_dir)
        info["backups"] = self.backups()
        if args.get("schema"):
            info["schema_dump"] = self.schema_dump()
            recorded = os.path.join(self.state_dir, "schema.sql")
            if os.path.isfile(recorded):
                with open(recorded, "rb") as handle:
                    info["schema_recorded"] = handle.read().decode("utf-8", "replace")
                info["schema_recorded_meta"] = read_json(recorded + ".json")
        if args.get("verify_backup"):
            info["backup_check"] = self.verify_newest_backup(info["backups"])
        return info

    def restore_mark(self, comment):
        """The restore that made the live database (step_db_restore's mark: backup, run, at), and
        whether this host's ledger records it as done; None: no restore made it."""
        try:
            mark = from_json(comment) if comment and comment.startswith("{") else None
        except ValueError:
            mark = None
        if not isinstance(mark, dict) or not mark.get("golive_restore"):
            return None
        mark["backup"] = mark.pop("golive_restore")
        mark["ledger"] = any(e.get("action") == "restore" and e.get("backup") == mark["backup"]
                             and e.get("run") == mark.get("run") and e.get("result") == "ok"
                             for e in self.ledger_tail(200))
        return mark

    def schema_dump(self):
        code, output = self.spawn([self.program("pg_dump"), "--schema-only", "--no-owner", "--no-privileges"],
                                  self.timeout("backup"))
        if code != 0:
            raise StepError("pg_dump --schema-only: %s" % explain(output, self.connection))
        return output

    def record_schema(self, action, release):
        """The schema as golive left it (drift compares the live one with it: a change by hand shows).
        Best effort: a step that changed the database has done so whether or not this works."""
        try:
            self.write_schema(action, release)
        except (StepError, OSError) as error:
            self.vars["schema_record_error"] = str(error)

    def write_schema(self, action, release):
        text = self.schema_dump()
        if not os.path.isdir(self.state_dir):
            os.makedirs(self.state_dir, 0o755)
        path = os.path.join(self.state_dir, "schema.sql")
        write_atomic(path, text.encode("utf-8"), 0o600)
        history = self.history()
        write_atomic(path + ".json", to_json({"at": utc_now(), "action": action, "release": release,
                                             "schema_version": history[-1]["version"] if history else None,
                                             "applied": [[h["version"], h["checksum"]] for h in history]}).encode(),
                     0o600)

    def verify_newest_backup(self, backups):
        """The newest backup exists, matches its recorded sha256 and reads back (pg_restore --list)."""
        verified = sorted((b for b in backups if b.get("verified")), key=lambda b: b.get("created_at", ""))
        if not verified:
            return {"ok": False, "detail": "no backup in %s" % self.backup_dir}
        newest = verified[-1]
        path = os.path.join(self.backup_dir, newest.get("file", ""))
        if not os.path.isfile(path):
            return {"ok": False, "backup": newest["id"], "detail": "backup %s: %s is missing" % (newest["id"], path)}
        if sha256_file(path, fast_sha256()) != newest.get("sha256"):
            return {"ok": False, "backup": newest["id"], "detail": "backup %s: %s does not match its sha256"
                    % (newest["id"], path)}
        code, listing = self.spawn([self.program("pg_restore"), "--list", path], self.timeout("backup"))
        if code != 0 or "; Archive created at" not in listing:
            return {"ok": False, "backup": newest["id"], "detail": "backup %s does not read back: %s"
                    % (newest["id"], _error_line(listing))}
        return {"ok": True, "backup": newest["id"], "detail": "backup %s (%s) reads back" % (newest["id"],
                                                                                           newest.get("created_at"))}

    # -- backup --------------------------------------------------------------------------

    def step_db_backup(self, args):
        """pg_dump -Fc into the backup directory, verified readable with pg_restore --list before it
        counts; disk space checked first. The statistics snapshot taken just before the dump is what
        a restore's cost is measured against (rows written since it)."""
        backup_id = args["id"]
        if not os.path.isdir(self.backup_dir):
            os.makedirs(self.backup_dir, 0o700)
        size = int(self.query("SELECT to_json(pg_database_size(current_database()));") or 0)
        free = self.disk_free(self.backup_dir)
        needed = size + int(args.get("min_free_mb") or 0) * 1048576
        if free is not None and free < needed:
            raise StepError("not enough disk space for a backup in %s: %.1f MB free, the database is %.1f MB and "
                            "%d MB must stay free (database.backup.min_free_mb)"
                            % (self.backup_dir, free / 1048576.0, size / 1048576.0, int(args.get("min_free_mb") or 0)))
        history = self.history()
        stats = self.stats()
        final = os.path.join(self.backup_dir, backup_id + ".dump")
        partial = final + ".partial"
        started = time.time()
        self.progress("pg_dump of %.1f MB" % (size / 1048576.0))
        code, output = self.spawn([self.program("pg_dump"), "-Fc", "-f", partial], self.timeout("backup"),
                                  application="golive-backup", fault_point="db_backup:running")
        if code != 0:
            self.remove_quietly(partial)
            raise StepError("pg_dump failed: %s" % explain(output, self.connection))
        os.chmod(partial, 0o600)
        dumped = time.time() - started
        code, listing = self.spawn([self.program("pg_restore"), "--list", partial], self.timeout("backup"))
        entries = [x for x in listing.splitlines() if x.strip() and not x.startswith(";")]
        if code != 0 or "; Archive created at" not in listing:
            self.remove_quietly(partial)
            raise StepError("the backup does not read back (pg_restore --list): %s" % explain(listing, self.connection))
        digest = sha256_file(partial, fast_sha256())
        fd = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(partial, final)
        meta = {
            "id": backup_id, "file": os.path.basename(final), "created_at": args.get("created_at") or utc_now(),
            "customer": self.db.get("customer"), "environment": self.db.get("environment"),
            "database": self.connection.get("name"), "server": "%s:%s" % (self.connection.get("host"),
                                                                          self.connection.get("port")),
            "size": os.path.getsize(final), "database_size": size, "sha256": digest, "verified": True,
            "entries": len(entries), "seconds": round(time.time() - started, 3), "dump_seconds": round(dumped, 3),
            "schema": [[h["version"], h["checksum"]] for h in history],
            "schema_version": history[-1]["version"] if history else None,
            "release": args.get("release"), "taken_for": args.get("taken_for"), "operator": args.get("operator"),
            "stats": stats, "restores": [],
        }
        write_atomic(os.path.join(self.backup_dir, backup_id + ".json"), to_json(meta).encode(), 0o600)
        self.vars["backup"] = backup_id
        return {"backup": meta}

    def remove_quietly(self, path):
        try:
            os.unlink(path)
        except OSError:
            pass

    # -- migrate -------------------------------------------------------------------------

    def step_db_migrate(self, args):
        """Apply the pending migrations, consecutive transactional ones in one transaction (all or
        nothing) with SET lock_timeout and a statement timeout, each recorded in the history table in
        the same transaction; a migration that cannot run in a transaction (CREATE INDEX
        CONCURRENTLY) runs alone and is recorded after it succeeded. The whole output goes to a 0600
        log file. The history is checked again first, under PostgreSQL's advisory lock: the plan's
        view of it must still hold."""
        table = self.db.get("history_table") or "golive_schema_history"
        log = self.log_file("migrate")
        self.vars["migration_log"] = log
        self.append_log(log, "golive migrate %s (%s) at %s\n" % (args.get("release"), self.db.get("environment"),
                                                                 utc_now()))
        code, output = self.psql("SELECT pg_advisory_xact_lock(%d);\n%s\n" % (ADVISORY_LOCK, history_ddl(table)),
                                 application="golive-migrate")
        if code != 0:
            self.append_log(log, output)
            raise StepError(explain(output, self.connection))
        applied = [[h["version"], h["checksum"]] for h in self.history()]
        expected = [list(x) for x in args.get("expect_applied") or []]
        if applied != expected:
            raise StepError("the database's migrations changed since this run looked (%s, now %s): nothing applied; "
                            "run the deploy again" % (_versions(expected), _versions(applied)))
        lock = "%dms" % int(self.timeout("lock") * 1000)
        statement = "%dms" % int(self.timeout("migrate") * 1000)
        groups = []
        for migration in args.get("migrations", []):
            if migration.get("transactional", True) and groups and groups[-1][0]:
                groups[-1][1].append(migration)
            else:
                groups.append((migration.get("transactional", True), [migration]))
        done = []
        self.vars["applied"] = done
        for transactional, members in groups:
            started = time.time()
            names = ", ".join("%s_%s" % (m["version"], m["name"]) for m in members)
            self.progress("applying %s" % names)
            self.append_log(log, "-- applying %s%s\n" % (names, "" if transactional else " (outside a transaction)"))
            if transactional:
                script = ["BEGIN;", "SET LOCAL lock_timeout = '%s';" % lock,
                          "SET LOCAL statement_timeout = '%s';" % statement,
                          "SELECT pg_advisory_xact_lock(%d);" % ADVISORY_LOCK]
                for m in members:
                    script += ["\\echo golive: %s_%s" % (m["version"], m["name"]), m["sql"], ";",
                               self.history_insert(table, m, args, "coalesce(extract(epoch FROM clock_timestamp() - "
                                                                   "now()), 0)")]
                code, output = self.commit_while_wanted("\n".join(script) + "\n", self.timeout("migrate"),
                                                        "golive-migrate", "db_migrate:running")
            else:
                code, output = self.psql(members[0]["sql"] + "\n;\n", timeout=self.timeout("migrate"),
                                         application="golive-migrate", fault_point="db_migrate:running",
                                         options="-c lock_timeout=%s -c statement_timeout=%s" % (lock, statement))
                if code == 0:
                    code, more = self.psql(self.history_insert(table, members[0], args, "%f" % (time.time() - started))
                                           + "\n", application="golive-migrate")
                    output += more
            self.append_log(log, output + "\n")
            if code != 0:
                self.vars["partial"] = bool(done) or not transactional
                what = ("the transaction rolled back: none of %s was applied" % names if transactional else
                        "%s ran outside a transaction and may be half applied" % names)
                raise StepError("migration %s failed: %s; %s%s (log: %s)"
                                % (names, explain(output, self.connection), what,
                                   "; applied before it: %s" % ", ".join(done) if done else "", log))
            done.extend("%s_%s" % (m["version"], m["name"]) for m in members)
            self.append_log(log, "-- applied %s in %.2f s\n" % (names, time.time() - started))
        self.record_schema("migrate", args.get("release"))
        history = self.history()
        return {"applied": done, "schema_version": history[-1]["version"] if history else None, "log": log,
                "history": history}

    def commit_while_wanted(self, script, timeout, application, fault_point):
        """Run a transaction's statements, then COMMIT only if the controller that asked for it is
        still there: a controller killed while a migration runs leaves the database as it was, like
        its application hosts, which it never switched. (exit code, output)"""
        import subprocess
        import tempfile

        marker = "golive-statements-done-%d" % os.getpid()
        with tempfile.TemporaryFile() as output:
            try:
                process = subprocess.Popen([self.program("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
                                           stdin=subprocess.PIPE, stdout=output, stderr=subprocess.STDOUT,
                                           env=self.pg_env(application), close_fds=True, cwd="/")
            except OSError as error:
                return 127, "psql: %s" % (error.strerror or error)
            try:
                process.stdin.write((script + "\\echo %s\n" % marker).encode("utf-8"))
                process.stdin.flush()
            except OSError:
                pass  # psql stopped at an error; its output says which
            self.fault_point(fault_point)
            deadline = time.time() + timeout
            note = ""
            while process.poll() is None:
                output.seek(0)  # psql's output so far: small, a migration's notices
                if marker.encode() in output.read():
                    wanted = self.controller_present()
                    if not wanted:
                        note = "\n(the controller went away before the migration committed: rolled back)"
                    try:
                        process.stdin.write(b"COMMIT;\n" if wanted else b"ROLLBACK;\n")
                        process.stdin.close()
                    except OSError:
                        pass
                    remaining = max(1.0, deadline - time.time())
                    if wait_status(process.pid, remaining) is None:
                        process.kill()
                    process.wait()
                    break
                if time.time() > deadline:
                    process.kill()
                    process.wait()
                    self.end_sessions(application)
                    note = "\n(timed out after %ss: stopped, and its database session ended)" % timeout
                    break
                time.sleep(0.02)
            output.seek(0)
            raw = output.read()
            text = self.masker.tail_bytes(raw, len(raw)).replace(marker + "\n", "")  # masked on the raw bytes
        code = process.returncode if process.returncode is not None else -1
        if note and code == 0:
            code = 75  # rolled back on purpose
        return (-1 if "timed out" in note else code), text + note

    def controller_present(self):
        """Whether the controller still reads this batch's output (a write fails once sshd lost it)."""
        try:
            sys.stdout.buffer.write(b"\n")
            sys.stdout.buffer.flush()
            return True
        except OSError:
            return False

    def history_insert(self, table, migration, args, seconds):
        values = [quote_literal(migration["version"]), quote_literal(migration["name"]),
                  quote_literal(migration["checksum"]), quote_literal(migration.get("kind") or "contract"),
                  quote_literal(args.get("release") or ""), "now()", quote_literal(args.get("operator") or ""),
                  quote_literal(args.get("engine") or "pyinfra"), seconds,
                  "true" if migration.get("reversible") else "false"]
        return "INSERT INTO %s (%s) VALUES (%s);" % (quote_ident(table), ", ".join(HISTORY_COLUMNS),
                                                     ", ".join(values))

    def step_db_down(self, args):
        """The live release's down-migrations, newest first, and their history rows, in one transaction."""
        table = self.db.get("history_table") or "golive_schema_history"
        log = self.log_file("down")
        self.vars["migration_log"] = log
        script = ["BEGIN;", "SET LOCAL lock_timeout = '%dms';" % int(self.timeout("lock") * 1000),
                  "SET LOCAL statement_timeout = '%dms';" % int(self.timeout("migrate") * 1000),
                  "SELECT pg_advisory_xact_lock(%d);" % ADVISORY_LOCK]
        for m in args.get("migrations", []):
            script += ["\\echo golive: undoing %s_%s" % (m["version"], m["name"]), m["down_sql"], ";",
                       "DELETE FROM %s WHERE version = %s;" % (quote_ident(table), quote_literal(m["version"]))]
        script.append("COMMIT;")
        code, output = self.psql("\n".join(script) + "\n", timeout=self.timeout("migrate"),
                                 application="golive-migrate", fault_point="db_down:running")
        self.append_log(log, output + "\n")
        if code != 0:
            raise StepError("down-migrations failed, the transaction rolled back (nothing undone): %s (log: %s)"
                            % (explain(output, self.connection), log))
        self.record_schema("down", args.get("release"))
        history = self.history()
        return {"undone": ["%s_%s" % (m["version"], m["name"]) for m in args.get("migrations", [])],
                "schema_version": history[-1]["version"] if history else None, "log": log}

    # -- restore -------------------------------------------------------------------------

    def backup_meta(self, backup_id):
        meta = read_json(os.path.join(self.backup_dir, backup_id + ".json"))
        if not meta:
            raise StepError("backup %s is not in %s" % (backup_id, self.backup_dir))
        return meta

    def step_db_restore(self, args):
        """Restore a backup into a new database beside the live one, check it, then swap the names in
        one transaction: the live database is never half restored, and what it held is kept as
        <name>__golive_replaced_<stamp> (the rows written after the backup are there). A rehearsal
        restores into <name>__golive_rehearsal, measures, and drops it."""
        backup_id = args["backup"]
        rehearsal = bool(args.get("rehearsal"))
        meta = self.backup_meta(backup_id)
        path = os.path.join(self.backup_dir, meta["file"])
        if not os.path.isfile(path):
            raise StepError("backup %s: its file %s is missing" % (backup_id, path))
        if sha256_file(path, fast_sha256()) != meta.get("sha256"):
            raise StepError("backup %s: %s does not match its recorded sha256; not restored" % (backup_id, path))
        name = self.connection.get("name")
        scratch = "%s__golive_%s" % (name[:40], "rehearsal" if rehearsal else "restore")
        log = self.log_file("rehearse" if rehearsal else "restore")
        self.vars["restore_log"] = log
        started = time.time()
        settings = self.query(
            "SELECT json_build_object('encoding', pg_encoding_to_char(encoding), 'collate', datcollate, 'ctype',"
            " datctype) FROM pg_database WHERE datname = current_database();")
        self.admin("DROP DATABASE IF EXISTS %s WITH (FORCE);" % quote_ident(scratch), log)
        self.admin("CREATE DATABASE %s TEMPLATE template0 ENCODING %s LC_COLLATE %s LC_CTYPE %s;"
                   % (quote_ident(scratch), quote_literal(settings["encoding"]), quote_literal(settings["collate"]),
                      quote_literal(settings["ctype"])), log)
        self.progress("pg_restore of backup %s" % backup_id)
        argv = [self.program("pg_restore"), "--exit-on-error", "--no-owner", "-d", scratch]
        jobs = int(self.db.get("restore_jobs") or 1)
        if jobs > 1:
            argv += ["--jobs", str(jobs)]
        code, output = self.spawn(argv + [path], self.timeout("restore"), application="golive-restore",
                                  fault_point="db_restore:running")
        self.append_log(log, output)
        if code != 0:
            self.admin("DROP DATABASE IF EXISTS %s WITH (FORCE);" % quote_ident(scratch), log, check=False)
            raise StepError("pg_restore of backup %s failed, the live database is untouched: %s (log: %s)"
                            % (backup_id, explain(output, self.connection), log))
        restored = [[h["version"], h["checksum"]] for h in self.history(scratch)]
        if restored != [list(x) for x in meta.get("schema") or []]:
            self.admin("DROP DATABASE IF EXISTS %s WITH (FORCE);" % quote_ident(scratch), log, check=False)
            raise StepError("backup %s restored a schema (%s) other than the one it recorded (%s); the live "
                            "database is untouched" % (backup_id, _versions(restored), _versions(meta.get("schema"))))
        seconds = round(time.time() - started, 3)
        replaced = None
        if rehearsal:
            self.admin("DROP DATABASE IF EXISTS %s WITH (FORCE);" % quote_ident(scratch), log)
        else:
            self.fault_point("db_restore:swap")
            # the restored database carries which restore made it (backup, run), set in the swap's own
            # transaction: a rollback run again knows from the live database whether its restore happened
            mark = to_json({"golive_restore": backup_id, "run": self.run_id(), "at": utc_now()})
            replaced = self.swap(name, scratch, log, mark)
            self.record_schema("restore", meta.get("release"))
        record = {"at": utc_now(), "seconds": seconds, "size": meta.get("size"), "kind":
                  "rehearsal" if rehearsal else "restore", "environment": self.db.get("environment"),
                  "operator": args.get("operator")}
        meta.setdefault("restores", []).append(record)
        write_atomic(os.path.join(self.backup_dir, backup_id + ".json"), to_json(meta).encode(), 0o600)
        return {"backup": backup_id, "seconds": seconds, "replaced_database": replaced, "log": log,
                "schema_version": meta.get("schema_version"), "rehearsal": rehearsal}

    def admin(self, sql, log, check=True):
        """SQL on the maintenance database (postgres): creating, dropping, renaming databases."""
        code, output = self.psql(sql + "\n", database="postgres", timeout=self.timeout("restore"),
                                 application="golive-restore")
        if output.strip():
            self.append_log(log, output + "\n")
        if code != 0 and check:
            raise StepError(explain(output, self.connection))
        return code == 0

    def swap(self, name, scratch, log, mark=None):
        """The restored database takes the live one's name in one transaction, with `mark` as its
        comment (step_db_probe reads it back); the live one is kept."""
        replaced = "%s__golive_replaced_%s" % (name[:30], time.strftime("%Y%m%dT%H%M%S", time.gmtime()))
        grants = self.query(
            "SELECT coalesce(json_agg(json_build_array(a.privilege_type, coalesce(r.rolname, 'PUBLIC'))), '[]')"
            " FROM pg_database d, aclexplode(d.datacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee"
            " WHERE d.datname = current_database() AND d.datacl IS NOT NULL;") or []
        has_acl = self.query("SELECT to_json(datacl IS NOT NULL) FROM pg_database WHERE datname = current_database();")
        settings = self.query("SELECT coalesce(json_agg(s), '[]') FROM pg_db_role_setting d, unnest(d.setconfig) s"
                              " WHERE d.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())"
                              " AND d.setrole = 0;") or []
        script = []
        if has_acl:
            script.append("REVOKE ALL ON DATABASE %s FROM PUBLIC;" % quote_ident(scratch))
            for privilege, role in grants:
                script.append("GRANT %s ON DATABASE %s TO %s;" % (privilege, quote_ident(scratch),
                                                                   "PUBLIC" if role == "PUBLIC" else quote_ident(role)))
        for setting in settings:
            key, _, value = setting.partition("=")
            script.append("ALTER DATABASE %s SET %s = %s;" % (quote_ident(scratch), quote_ident(key),
                                                              quote_literal(value)))
        if script:
            self.admin("\n".join(script), log)
        last = ""
        for _ in range(10):  # a client reconnecting between terminate and rename: try again
            self.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname IN (%s, %s) "
                       "AND pid <> pg_backend_pid();" % (quote_literal(name), quote_literal(scratch)), log, check=False)
            comment = "COMMENT ON DATABASE %s IS %s;\n" % (quote_ident(scratch), quote_literal(mark)) if mark else ""
            code, output = self.psql("BEGIN;\n%sALTER DATABASE %s RENAME TO %s;\nALTER DATABASE %s RENAME TO %s;\n"
                                     "COMMIT;\n" % (comment, quote_ident(name), quote_ident(replaced),
                                                    quote_ident(scratch), quote_ident(name)),
                                     database="postgres", application="golive-restore")
            self.append_log(log, output)
            if code == 0:
                return replaced
            last = output
            time.sleep(0.2)
        raise StepError("could not swap the restored database in: %s; it is ready as %s"
                        % (explain(last, self.connection), scratch))

    # -- retention -----------------------------------------------------------------------

    def step_db_prune(self, args):
        removed = []
        for backup_id in args.get("backups", []):
            meta = read_json(os.path.join(self.backup_dir, backup_id + ".json")) or {}
            for name in (meta.get("file") or backup_id + ".dump", backup_id + ".json"):
                path = os.path.join(self.backup_dir, name)
                if os.path.exists(path):
                    os.unlink(path)
            removed.append(backup_id)
        dropped = []
        for database in args.get("databases", []):
            if "__golive_" not in database:
                continue  # only what golive made beside the live database
            code, _ = self.psql("DROP DATABASE IF EXISTS %s WITH (FORCE);\n" % quote_ident(database),
                                database="postgres", application="golive-prune")
            if code == 0:
                dropped.append(database)
        return {"removed": removed, "dropped": dropped}

    # -- on application hosts ------------------------------------------------------------

    def step_settle(self, args):
        """The outcome of a batch whose steps all run (an environment's recovery): any failed step
        makes it failed, with what failed; the ledger entry that follows records it."""
        failed = [s for s in self.steps if not s["ok"]]
        self.vars["result"] = "failed" if failed else args.get("result", "ok")
        details = [args.get("detail") or ""] + ["%s: %s" % (s["name"], s.get("error")) for s in failed]
        self.vars["error"] = "; ".join(d for d in details if d)
        return {"failed": [s["name"] for s in failed]}

    def step_stop(self, args):
        """Stop the service of a release (the one live by default), before a migration."""
        release = self.resolve(args.get("release")) or self.current()
        if not release:
            return {"skipped": True}
        self.run_service(release, "stop", args)
        return {"release": release}

    def step_db_command(self, args):
        """The vendor's own migrate command(s), in the new release's directory, whole output logged;
        then the vendor's version command: the schema version it reports is recorded."""
        release = self.resolve(args.get("release"))
        cwd = os.path.join(self.releases_dir, release or "")
        if not os.path.isdir(cwd):
            raise StepError("release %s is not on this host" % release)
        log = self.log_file("migrate")
        self.vars["migration_log"] = log
        env = self.command_env(release, "deploy")
        env.update(args.get("env") or {})
        before = self.version_of(args, cwd, env, log)
        outputs = []
        for index, command in enumerate(args.get("commands", [])):
            self.progress("migrate command %d of %d" % (index + 1, len(args.get("commands", []))))
            self.append_log(log, "-- $ %s\n" % command)
            started = time.time()
            code, output = self.spawn(["/bin/sh", "-c", command], self.timeout("migrate"), cwd=cwd,
                                      application="golive-migrate", env_extra=env,
                                      fault_point="db_command:running")
            self.append_log(log, output + "\n-- exit %d after %.1f s\n" % (code, time.time() - started))
            outputs.append(output[-TAIL:])
            if code != 0:
                raise StepError("migrate command %d of %d failed (exit %d): %s (log: %s)"
                                % (index + 1, len(args.get("commands", [])), code, output.strip()[-300:], log))
        after = self.version_of(args, cwd, env, log)
        return {"version_before": before, "version_after": after, "log": log, "output": outputs[-1] if outputs else ""}

    def version_of(self, args, cwd, env, log):
        command = args.get("version_command")
        if not command:
            return None
        code, output = self.spawn(["/bin/sh", "-c", command], self.timeout("connect") * 6, cwd=cwd, env_extra=env,
                                  application="golive-version")
        self.append_log(log, "-- $ %s\n%s\n" % (command, output))
        if code != 0:
            raise StepError("the version command failed (exit %d): %s" % (code, output.strip()[-300:]))
        lines = [x.strip() for x in output.splitlines() if x.strip()]
        return lines[-1] if lines else None

    def step_db_sql(self, args):
        """A SQL script of the release (the vendor's pre-migration script), in one transaction."""
        log = self.log_file("pre-sql")
        code, output = self.psql("BEGIN;\nSET LOCAL lock_timeout = '%dms';\n%s\n;\nCOMMIT;\n"
                                 % (int(self.timeout("lock") * 1000), args["sql"]), timeout=self.timeout("migrate"),
                                 application="golive-migrate", fault_point="db_sql:running")
        self.append_log(log, output)
        if code != 0:
            raise StepError("%s failed, its transaction rolled back: %s (log: %s)"
                            % (args.get("file") or "the SQL script", explain(output, self.connection), log))
        return {"log": log}

    def step_db_record(self, args):
        """Record in the history table what a vendor's command did (the version it reports)."""
        table = self.db.get("history_table") or "golive_schema_history"
        code, output = self.psql("BEGIN;\nSELECT pg_advisory_xact_lock(%d);\n%s\n%s\nCOMMIT;\n"
                                 % (ADVISORY_LOCK, history_ddl(table),
                                    self.history_insert(table, args["migration"], args, "%f" % float(
                                        args.get("seconds") or 0))), application="golive-migrate")
        if code != 0:
            raise StepError("recording the migration failed: %s" % explain(output, self.connection))
        self.record_schema("migrate", args.get("release"))
        history = self.history()
        return {"schema_version": history[-1]["version"] if history else None, "history": history}


def _versions(state):
    return ", ".join(str(x[0]) for x in state or []) or "none"


def db_main(raw_request, stream):
    agent_main(raw_request, stream, DatabaseAgent)


if __name__ == "golive_agent":
    db_main(REQUEST, STREAM)  # noqa: F821 - provided by the bootstrap
