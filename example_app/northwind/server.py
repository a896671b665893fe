"""The northwind HTTP service: `GET /health` for deploy tools, `GET /` for people, and the plant
floor's work orders (`GET /work-orders`, `POST /work-orders` with a JSON body) in PostgreSQL.

Run from a release directory as `python3 -m northwind.server [--config-dir DIR] [--pidfile FILE]`
(bin/northwind-ctl does that). The pidfile is written only once the socket listens, so its
appearance tells the control script that the start succeeded.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from northwind import config as configuration
from northwind import plant
from northwind.store import Store, StoreUnavailable

# <release>/northwind/server.py, resolved: `current` is a symlink, the release is what it points to.
RELEASE_ROOT = Path(__file__).resolve().parent.parent


class Service:
    """What the running process reports about itself: fixed at start, like the code it runs."""

    def __init__(self, release_root: Path, config: configuration.Config) -> None:
        self.config = config
        self.release = release_root.name
        self.version = (release_root / "VERSION").read_text().strip()
        # A release carrying this marker fails its health check (tests golive's automatic rollback).
        self.broken = (release_root / "BROKEN_HEALTH").exists()
        self.store = Store(config.database, release_root) if config.database else None

    def health(self) -> tuple[int, dict]:
        """Always the version, config hash and schema version; 503 when this code cannot serve: a
        broken release, or a database schema it cannot run on. A database that does not answer is
        reported, not fatal: the deploy tool compares the schema version it expects."""
        schema, database = None, "not configured"
        incompatible = False
        if self.store is not None:
            state, database = self.store.status()
            schema = state.version
            incompatible = database.startswith("incompatible")
        failing = self.broken or incompatible
        body = {
            "status": "failing" if failing else "ok",
            "version": self.version,
            "config_hash": self.config.hash,
            "release": self.release,
            "company": self.config.company,
            "pid": os.getpid(),
            "schema_version": schema,
            "code_schema": self.store.code_schema if self.store else None,
            "database": database,
        }
        return (503 if failing else 200), body

    def work_orders(self) -> tuple[int, dict]:
        if self.store is None:
            return 503, {"error": "no database configured"}
        try:
            return 200, {"work_orders": self.store.work_orders()}
        except StoreUnavailable as error:
            return 503, {"error": str(error)}

    def add_work_order(self, body: bytes) -> tuple[int, dict]:
        if self.store is None:
            return 503, {"error": "no database configured"}
        try:
            order = json.loads(body or b"{}")
            if not isinstance(order, dict):
                raise ValueError("the body must be a JSON object")
            return 201, {"id": self.store.add_work_order(order)}
        except StoreUnavailable as error:
            return 503, {"error": str(error)}
        except ValueError as error:
            return 400, {"error": str(error)}
        except Exception as error:  # the database refused the write (a schema this code does not match)
            return 500, {"error": f"{type(error).__name__}: {error}"}

    def home_page(self) -> str:
        company = html.escape(self.config.company["name"])
        plants = ", ".join(plant.plants(self.config.ini)) or "none configured"
        shifts = "".join(
            f"<li>{html.escape(name)}: {html.escape(hours)}</li>"
            for name, hours in sorted(plant.shifts(self.config.ini).items())
        )
        return (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>Northwind MES - {company}</title></head><body><h1>Northwind MES for {company}</h1>"
            f"<p>Version {html.escape(self.version)} (release {html.escape(self.release)}), "
            f"time zone {html.escape(self.config.company['timezone'])}, "
            f"locale {html.escape(self.config.company['locale'])}.</p>"
            f"<p>Plants: {html.escape(plants)}</p><ul>{shifts}</ul></body></html>\n"
        )


def handler_for(service: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "northwind"

        def do_GET(self) -> None:
            if self.path == "/health":
                status, body = service.health()
                self._send(status, "application/json", json.dumps(body, sort_keys=True) + "\n")
            elif self.path == "/work-orders":
                status, body = service.work_orders()
                self._send(status, "application/json", json.dumps(body, sort_keys=True, default=str) + "\n")
            elif self.path == "/":
                self._send(200, "text/html; charset=utf-8", service.home_page())
            else:
                self._send(404, "text/plain; charset=utf-8", "not found\n")

        def do_POST(self) -> None:
            if self.path != "/work-orders":
                self._send(404, "text/plain; charset=utf-8", "not found\n")
                return
            length = int(self.headers.get("Content-Length") or 0)
            status, body = service.add_work_order(self.rfile.read(min(length, 65536)))
            self._send(status, "application/json", json.dumps(body, sort_keys=True) + "\n")

        def _send(self, status: int, content_type: str, text: str) -> None:
            payload = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def write_pidfile(path: str) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w") as pidfile:
        pidfile.write(f"{os.getpid()}\n")
    os.replace(temporary, path)  # the control script must never read half a pid


def remove_own_pidfile(path: str) -> None:
    """Remove the pidfile unless a newer instance has already replaced it."""
    try:
        if Path(path).read_text().strip() == str(os.getpid()):
            os.unlink(path)
    except FileNotFoundError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="northwind")
    parser.add_argument(
        "--config-dir", default=os.environ.get("NORTHWIND_CONFIG_DIR", configuration.DEFAULT_CONFIG_DIR)
    )
    parser.add_argument("--pidfile", help="written once the server listens")
    args = parser.parse_args(argv)
    try:
        config = configuration.load(args.config_dir)
        service = Service(RELEASE_ROOT, config)
        server = ThreadingHTTPServer((config.listen_address, config.port), handler_for(service))
    except (configuration.ConfigError, OSError) as error:
        print(f"northwind: cannot start: {error}", file=sys.stderr, flush=True)
        return 2

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)  # leaves serve_forever in this (main) thread; shutdown() would deadlock

    signal.signal(signal.SIGTERM, stop)
    if args.pidfile:
        write_pidfile(args.pidfile)
    print(
        f"northwind {service.version} (release {service.release}) for {config.company['name']} "
        f"listening on {config.listen_address}:{config.port}, config {config.hash}",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if args.pidfile:
            remove_own_pidfile(args.pidfile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
