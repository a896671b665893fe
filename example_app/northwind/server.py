"""The northwind HTTP service: `GET /health` for deploy tools, `GET /` for people.

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

    def health(self) -> tuple[int, dict]:
        body = {
            "status": "failing" if self.broken else "ok",
            "version": self.version,
            "config_hash": self.config.hash,
            "release": self.release,
            "company": self.config.company,
            "pid": os.getpid(),
        }
        return (503 if self.broken else 200), body

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
            elif self.path == "/":
                self._send(200, "text/html; charset=utf-8", service.home_page())
            else:
                self._send(404, "text/plain; charset=utf-8", "not found\n")

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
