"""The fingerprint's facts gathered the way a Testinfra suite would: one assertion-style call per
fact, host after host, over Testinfra's ssh:// backend tuned with a ControlPath (so connections are
reused), host keys verified. The bench compares golive drift (one round trip per host) with this.

    python -m golive.bench.testinfra_facts WORKSPACE CUSTOMER
"""

from __future__ import annotations

import sys
import tempfile

import testinfra

from golive.workspace import Workspace


def ssh_config(hosts, control_dir: str) -> str:
    lines = []
    for host in hosts:
        c = host.connection
        lines += [f"Host {host.name}", f"  HostName {c.address}", f"  Port {c.port}", f"  User {c.user}",
                  f"  IdentityFile {c.key_file}", f"  UserKnownHostsFile {c.known_hosts_file}",
                  "  StrictHostKeyChecking yes", "  BatchMode yes", "  ControlMaster auto",
                  f"  ControlPath {control_dir}/%C", "  ControlPersist 60"]
    return "\n".join(lines) + "\n"


def facts(ws: Workspace, host, backend) -> dict:
    root, config_dir = ws.app.root, ws.app.config_dir
    current = backend.file(f"{root}/current")
    release_dir = f"{root}/{current.linked_to.rsplit('/', 2)[-2]}/{current.linked_to.rsplit('/', 1)[-1]}"
    found = {"release": current.linked_to}
    files = backend.run(f"find {release_dir}/ -type f").stdout.split()
    found["code"] = {path: backend.file(path).sha256sum for path in files}
    for spec in ws.app.templates:
        item = backend.file(f"{config_dir}/{spec.dest}")
        found[spec.dest] = (item.sha256sum, item.mode, item.user, item.group)
    found["os"] = (backend.system_info.distribution, backend.system_info.release)
    found["kernel"] = backend.run("uname -r").stdout
    found["packages"] = {name: backend.package(name).version for name in ws.app.runtime_packages}
    found["service"] = backend.run(ws.render_string(ws.app.service.status, host)).rc
    found["ports"] = backend.socket("tcp://8080").is_listening
    found["timezone"] = backend.file("/etc/timezone").content_string if backend.file("/etc/timezone").exists else ""
    found["locale"] = backend.run("locale").stdout
    return found


def main(argv: list[str]) -> int:
    root, customer = argv
    ws = Workspace(root)
    hosts = ws.customer(customer).hosts
    with tempfile.TemporaryDirectory(prefix="golive-ti-") as control_dir:
        config = f"{control_dir}/ssh_config"
        with open(config, "w") as handle:
            handle.write(ssh_config(hosts, control_dir))
        total = 0
        for host in hosts:
            total += len(facts(ws, host, testinfra.get_host(f"ssh://{host.name}", ssh_config=config))["code"])
    print(f"{len(hosts)} hosts, {total} files hashed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
