"""Writes the floor's JOB.json from a workspace: golive renders, so rendering is not timed.

    python -m golive.bench.floorjob WORKSPACE CUSTOMER ENVIRONMENT VERSION JOB.json
"""

from __future__ import annotations

import base64
import json
import sys

from golive.flows.desired import host_release_id
from golive.workspace import Workspace


def main(argv: list[str]) -> int:
    root, customer, environment, version, out = argv
    ws = Workspace(root)
    artifact = ws.artifact(version)
    hosts = []
    for host in ws.hosts(customer, environment):
        config = ws.render(host, version)
        c = host.connection
        hosts.append({"name": host.name, "address": c.address, "port": c.port, "user": c.user,
                      "key_file": c.key_file, "known_hosts": c.known_hosts_file,
                      "health_url": ws.render_string(ws.app.health.url, host, version),
                      "release": host_release_id(ws, host, version, config), "config_hash": config.hash,
                      "files": [{"dest": f.dest, "mode": f"{f.mode:04o}", "data": base64.b64encode(f.content).decode()}
                                for f in config.files]})
    job = {"root": ws.app.root, "config_dir": ws.app.config_dir, "version": version,
           "artifact": {"path": artifact.path, "name": artifact.name, "sha256": artifact.sha256},
           "max_members": ws.app.store.max_members, "hosts": hosts}
    with open(out, "w") as handle:
        json.dump(job, handle)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
