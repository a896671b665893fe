"""The floor: a minimal paramiko script doing golive's remote work with the fewest round trips.

It is what no real tool can beat by much: one SSH session per host (TCP_NODELAY on, host keys
verified), one thread per host, and every step as plain shell in as few commands as possible —
first deploy and new release in two round trips (lock + state; then upload, checksum, archive
check, unpack, configure, link, cutover, restart, verify, record, prune, unlock), no-change and
rollback in one. It writes the same on-host layout as golive so the two can be compared.

    python -m golive.bench.floor JOB.json deploy|nochange|rollback

JOB.json (written by golive.bench from the workspace, so rendering is not part of the timing):
{"root", "config_dir", "version", "artifact": {"path", "name", "sha256"}, "max_members",
 "hosts": [{"name", "address", "port", "user", "key_file", "known_hosts", "health_url", "release",
            "files": [{"dest", "mode", "data" (base64)}], "config_hash"}]}
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shlex
import socket
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

import paramiko

CTL = "current/bin/northwind-ctl"


def connect(host: dict) -> paramiko.SSHClient:
    sock = socket.create_connection((host["address"], host["port"]), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()
    client.load_host_keys(host["known_hosts"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(host["address"], port=host["port"], username=host["user"], sock=sock,
                   key_filename=host["key_file"], allow_agent=False, look_for_keys=False)
    return client


def run(client: paramiko.SSHClient, command: str, stdin_parts: tuple[bytes, ...] = ()) -> str:
    channel = client.get_transport().open_session()
    channel.exec_command(command)
    for part in stdin_parts:
        channel.sendall(part)
    channel.shutdown_write()
    output = b""
    while data := channel.recv(65536):
        output += data
    code = channel.recv_exit_status()
    if code != 0:
        raise RuntimeError(f"exit {code}: {output.decode()[-300:]} {channel.recv_stderr(4096).decode()[-300:]}")
    return output.decode()


def config_tar(files: list[dict]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for item in files:
            data = base64.b64decode(item["data"])
            info = tarfile.TarInfo(item["dest"])
            info.size, info.mode = len(data), int(item["mode"], 8)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def ledger_line(job: dict, host: dict, action: str, result: str) -> str:
    entry = {"action": action, "result": result, "host": host["name"], "release": host["release"],
             "engine": "floor", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return shlex.quote(json.dumps(entry))


# Reject what golive rejects before unpacking: absolute paths, '..', links, devices, FIFOs, setuid.
ARCHIVE_CHECK = r"""tar -tvzf "$A" | awk -v max="$MAX" '
  { n++; name=$6; t=substr($1,1,1) }
  t=="c"||t=="b"||t=="p"||t=="l"||t=="h" { bad="special or link: " name }
  name ~ /^\// || name ~ /(^|\/)\.\.(\/|$)/ { bad="escaping path: " name }
  $1 ~ /s/ { bad="setuid: " name }
  END { if (bad != "") { print bad; exit 1 } if (n > max) { print "too many members"; exit 1 } }'"""


def deploy(job: dict, host: dict) -> str:
    client = connect(host)
    try:
        root, release = job["root"], host["release"]
        state = run(client, f"cd {root} 2>/dev/null || mkdir -p {root}; cd {root} && mkdir -p .golive && "
                            f"mkdir .golive/lock && readlink current || true")
        if state.strip().endswith(release):
            run(client, f"cd {root} && rm -rf .golive/lock")
            return "unchanged"
        artifact = job["artifact"]
        configs = config_tar(host["files"])
        links = " ".join(f"ln -sfn {root}/current/config/{f['dest']} {job['config_dir']}/{f['dest']};"
                         for f in host["files"])
        meta = shlex.quote(json.dumps({"id": release, "version": job["version"], "state": "good",
                                       "config_hash": host["config_hash"], "artifact_sha256": artifact["sha256"]}))
        script = f"""set -e
cd {root}
mkdir -p .golive/artifacts .golive/releases releases shared/data shared/logs shared/run {job['config_dir']}
A=.golive/artifacts/{artifact['name']}; MAX={job['max_members']}
head -c {len(configs)} > .golive/config.tar
cat > "$A.part"
echo "{artifact['sha256']}  $A.part" | sha256sum -c --quiet
mv "$A.part" "$A"
{ARCHIVE_CHECK}
if [ ! -d releases/{release} ]; then  # a release unpacked by an earlier run is complete: reuse it
rm -rf releases/{release}.partial && mkdir releases/{release}.partial
tar -xzf "$A" -C releases/{release}.partial --no-same-owner
mkdir releases/{release}.partial/config && tar -xf .golive/config.tar -C releases/{release}.partial/config
for d in data logs run; do
  rm -rf releases/{release}.partial/$d; ln -s ../../shared/$d releases/{release}.partial/$d
done
mv -T releases/{release}.partial releases/{release}
fi
echo {meta} > .golive/releases/{release}.json
{links}
ln -sfn releases/{release} current.tmp && mv -T current.tmp current
{CTL} restart >/dev/null
i=0; until curl -sf {host['health_url']} | grep -q '"config_hash": "{host['config_hash']}"'; do
  i=$((i+1)); [ $i -lt 50 ] || exit 1; sleep 0.1; done
echo {ledger_line(job, host, "deploy", "ok")} >> .golive/ledger.jsonl
ls -1t releases | tail -n +6 | while read r; do rm -rf "releases/$r"; done
rm -rf .golive/lock
"""
        with open(artifact["path"], "rb") as handle:
            run(client, script, (configs, handle.read()))
        return "deployed"
    finally:
        client.close()


def nochange(job: dict, host: dict) -> str:
    """What golive verifies before it calls a host unchanged: the live release, its state, every
    config file's hash against the rendered one, every published config link, the service."""
    client = connect(host)
    try:
        root, release = job["root"], host["release"]
        sums = "".join(f"{hashlib.sha256(base64.b64decode(f['data'])).hexdigest()}  current/config/{f['dest']}\\n"
                       for f in host["files"])
        links = " && ".join(f"[ \"$(readlink {job['config_dir']}/{f['dest']})\" = {root}/current/config/{f['dest']} ]"
                            for f in host["files"])
        run(client, f"cd {root} && mkdir .golive/lock && [ \"$(readlink current)\" = releases/{release} ] && "
                    f"grep -q '\"state\": \"good\"' .golive/releases/{release}.json && "
                    f"printf '{sums}' | sha256sum -c --quiet && {links} && "
                    f"{CTL} status >/dev/null && echo {ledger_line(job, host, 'deploy', 'unchanged')} "
                    f">> .golive/ledger.jsonl && rm -rf .golive/lock")
        return "unchanged"
    finally:
        client.close()


def rollback(job: dict, host: dict) -> str:
    client = connect(host)
    try:
        root = job["root"]
        run(client, f"""set -e; cd {root}; mkdir .golive/lock
live=$(readlink current); live=${{live#releases/}}
target=$(ls -1t releases | grep -vx "$live" | head -n 1)
ln -sfn releases/$target current.tmp && mv -T current.tmp current
{CTL} restart >/dev/null
i=0; until curl -sf {host['health_url']} | grep -q "\\"release\\": \\"$target\\""; do
  i=$((i+1)); [ $i -lt 50 ] || exit 1; sleep 0.1; done
echo {ledger_line(job, host, 'rollback', 'ok')} >> .golive/ledger.jsonl
rm -rf .golive/lock""")
        return "rolled back"
    finally:
        client.close()


def main(argv: list[str]) -> int:
    with open(argv[0]) as handle:
        job = json.load(handle)
    action = {"deploy": deploy, "nochange": nochange, "rollback": rollback}[argv[1]]
    with ThreadPoolExecutor(max_workers=len(job["hosts"])) as pool:
        results = list(pool.map(lambda host: action(job, host), job["hosts"]))
    print(json.dumps({"hosts": len(results), "results": sorted(set(results))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
