"""scripts/bench: golive against tuned Ansible and the raw SSH floor, in one run, on local test hosts.

For each host count N the bench starts 2N test hosts (N staging, N production), builds a ~5 MB /
200-file release twice (1.0, 1.1), and times the same work through every engine:

    golive            golive's pyinfra engine (the CLI, as a user runs it)
    golive-ansible    golive --engine ansible (the roles, driven by golive)
    ansible-playbook  the same roles, run directly, tuned: pipelining, forks=N, ControlPersist, no facts
    floor             golive.bench.floor: paramiko, one session per host, fewest round trips

Scenarios: first deploy (hosts reset before every run), no-change re-deploy, new release, rollback;
drift of N staging against N production hosts (golive drift, and the same facts as Testinfra
assertions); golive check; and `ssh host true` to all hosts in parallel (the round-trip floor).
Each is repeated (--repeat; the slow baselines, Ansible and Testinfra, --baseline-repeat) and reported
as median/min/max with the number of runs and the controller's peak memory, and ratios golive/Ansible
and golive/floor from the same run. Timing is wall-clock of whole commands. The JSON is rewritten
after every host count, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from golive.testing._common import without_database_section
from golive.testing.hosts import TestHosts

REPO = Path(__file__).resolve().parents[3]
WORKSPACE_FILES = ("golive.yml", "config_templates", "checks", "roles", "playbooks", "vault-password.example")
CUSTOMER = "bench"
# Minutes per run at 30 hosts: --baseline-repeat may run them fewer times than golive and the floor.
SLOW_BASELINES = ("golive-ansible", "ansible-playbook", "testinfra")


@dataclass
class Measurement:
    scenario: str
    engine: str
    hosts: int
    seconds: list[float] = field(default_factory=list)
    peak_rss_mb: list[float] = field(default_factory=list)
    failed: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    def as_dict(self) -> dict:
        data = asdict(self)
        data.update(median=self.median, min=min(self.seconds) if self.seconds else None,
                    max=max(self.seconds) if self.seconds else None,
                    peak_rss_mb_max=max(self.peak_rss_mb) if self.peak_rss_mb else None)
        return data


def timed(argv: list[str], cwd: Path, env: dict) -> tuple[float, float, int, str]:
    """Wall seconds, peak resident memory (MB, the process and its waited-for children), exit code
    and output of one command."""
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode(errors="replace")
    return seconds, usage.ru_maxrss / 1024, process.returncode, text


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.base = Path(args.dir)
        self.base.mkdir(parents=True, exist_ok=True)
        self.hosts = TestHosts(self.base / "hosts", net=args.net, first=11)
        self.python = sys.executable
        self.env = {**os.environ, "PYTHONPATH": str(REPO / "deploy"), "GOLIVE_OPERATOR": "bench"}
        self.results: list[Measurement] = []
        self.store = self.base / "releases"
        self.floor_jobs: set[Path] = set()

    # -- set-up -----------------------------------------------------------------------------

    def build_releases(self) -> None:
        for version in ("1.0", "1.1"):
            subprocess.run([str(REPO / "scripts" / "build-release"), version, "--store", str(self.store),
                            "--files", "200", "--size-kb", "5000"], check=True, capture_output=True)

    def workspace(self, n: int) -> Path:
        """The example workspace with one customer of n staging and n production test hosts."""
        ws = self.base / f"ws-{n}"
        if ws.exists():
            shutil.rmtree(ws)
        ws.mkdir()
        for name in WORKSPACE_FILES:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, ws / name, ignore=shutil.ignore_patterns("__pycache__"))
            elif source.exists():
                shutil.copy2(source, ws / name)
        (ws / "ansible.cfg").write_text((REPO / "ansible.cfg").read_text().replace("forks = 30", f"forks = {n}"))
        # stateless deploys on the light hosts: the example's database section needs database hosts
        app = ws / "golive.yml"
        app.write_text(without_database_section(app.read_text(), str(app)))
        shutil.copytree(self.store, ws / "build" / "releases")
        inventory = ws / "inventories" / CUSTOMER
        shutil.copytree(REPO / "inventories" / "retailer" / "group_vars", inventory / "group_vars")
        connection = inventory / "group_vars" / "all" / "connection.yml"
        connection.write_text(connection.read_text()
                              .replace("/tmp/golive-testhosts/client_key", self.hosts.client_key)
                              .replace("/tmp/golive-testhosts/known_hosts", self.hosts.known_hosts))
        infos = self.hosts.hosts
        lines = ["all:", "  children:"]
        for group, prefix, chosen in (("staging", "s", infos[:n]), ("production", "p", infos[n:2 * n])):
            lines += [f"    {group}:", "      hosts:"]
            lines += [f"        {prefix}{i:02d}:\n          ansible_host: {h.address}" for i, h in enumerate(chosen, 1)]
        (inventory / "hosts.yml").write_text("\n".join(lines) + "\n")
        return ws

    # -- running ----------------------------------------------------------------------------

    def command(self, ws: Path, engine: str, action: str, environment: str = "staging",
                version: str = "1.0") -> list[str]:
        golive = [self.python, "-m", "golive"]
        if engine in ("golive", "golive-ansible"):
            extra = ["--engine", "ansible"] if engine == "golive-ansible" else []
            if action == "rollback":
                return [*golive, "rollback", CUSTOMER, environment, *extra]
            return [*golive, "deploy", CUSTOMER, environment, "--release", version, *extra]
        if engine == "ansible-playbook":
            from golive.bench import ansible_baseline

            return ansible_baseline.command(ws, CUSTOMER, environment, version, action)
        if engine == "floor":
            job = self.base / f"floor-{ws.name}-{environment}-{version}.json"
            if job not in self.floor_jobs:  # written by this run: an earlier run's names other artifacts
                self.floor_jobs.add(job)
                subprocess.run([self.python, "-m", "golive.bench.floorjob", str(ws), CUSTOMER, environment, version,
                                str(job)], check=True, env=self.env)
            return [self.python, "-m", "golive.bench.floor", str(job),
                    {"deploy": "deploy", "nochange": "nochange", "rollback": "rollback"}[action]]
        raise ValueError(engine)

    def run(self, argv: list[str], ws: Path, findings_ok: bool = False) -> tuple[float, float]:
        seconds, rss_mb, code, output = timed(argv, ws, self.env)
        if code != 0 and not (findings_ok and code == 1):  # drift may find drift: still a completed run
            raise RuntimeError(f"{' '.join(argv[-6:])} exited {code}: {output[-800:]}")
        return seconds, rss_mb

    def measure(self, scenario: str, engine: str, n: int, ws: Path, argv: list[str], setup=None,
                findings_ok: bool = False) -> None:
        measurement = Measurement(scenario, engine, n)
        repeat = self.args.repeat
        if engine in SLOW_BASELINES and self.args.baseline_repeat:
            repeat = self.args.baseline_repeat
        try:
            for _ in range(repeat):
                if setup is not None:
                    setup()
                seconds, rss = self.run(argv, ws, findings_ok)
                measurement.seconds.append(round(seconds, 3))
                measurement.peak_rss_mb.append(round(rss, 1))
        except Exception as error:  # reported in the table, the rest of the bench goes on
            measurement.failed = str(error)[-300:]
        self.results.append(measurement)
        shown = f"{measurement.median:.2f}s" if measurement.median is not None else f"FAILED {measurement.failed}"
        print(f"  {scenario:<14} {engine:<17} {n:>3} hosts  {shown}", file=sys.stderr, flush=True)

    def reset(self, n: int) -> None:
        self.hosts.reset([h.name for h in self.hosts.hosts[:2 * n]])

    def engines(self) -> list[str]:
        available = ["golive", "floor"]
        if (REPO / "deploy" / "golive" / "engines" / "ansible.py").exists() and (REPO / "roles").is_dir():
            available[1:1] = ["golive-ansible", "ansible-playbook"]
        wanted = self.args.engines.split(",") if self.args.engines else available
        return [e for e in available if e in wanted]

    def set_up_deploy(self, ws: Path, engine: str, version: str) -> None:
        """An untimed deploy that prepares a scenario. golive's pyinfra engine does it for the
        Ansible engines: both leave the same on-host state (tests/integration/test_ansible_engine.py),
        and an Ansible set-up run at 30 hosts costs minutes."""
        preparer = "golive" if engine in ("golive-ansible", "ansible-playbook") else engine
        self.run(self.command(ws, preparer, "deploy", version=version), ws)

    def deploy_scenarios(self, n: int, ws: Path) -> None:
        for engine in self.engines():
            first = self.command(ws, engine, "deploy", version="1.0")
            self.measure("first deploy", engine, n, ws, first, setup=lambda: self.reset(n))
            self.measure("no-change", engine, n, ws, self.command(ws, engine, "nochange", version="1.0"))
            new = self.command(ws, engine, "deploy", version="1.1")
            self.measure("new release", engine, n, ws, new,
                         setup=lambda e=engine: (self.reset(n), self.set_up_deploy(ws, e, "1.0")))
            rollback = self.command(ws, engine, "rollback")
            self.measure("rollback", engine, n, ws, rollback, setup=lambda e=engine: self.set_up_deploy(ws, e, "1.1"))

    def inspection_scenarios(self, n: int, ws: Path) -> None:
        golive = [self.python, "-m", "golive"]
        addresses = [h.address for h in self.hosts.hosts[:2 * n]]
        self.measure("ssh true", "openssh", 2 * n, ws,
                     [self.python, "-m", "golive.bench.sshtrue", self.hosts.client_key, self.hosts.known_hosts,
                      *addresses])
        if not (REPO / "deploy" / "golive" / "flows" / "drift.py").exists():
            return
        self.reset(n)
        for environment in ("staging", "production"):
            self.run([*golive, "deploy", CUSTOMER, environment, "--release", "1.0", "--override-promotion", "bench"],
                     ws)
        self.measure("drift", "golive", 2 * n, ws, [*golive, "drift", CUSTOMER], findings_ok=True)
        self.measure("drift", "testinfra", 2 * n, ws,
                     [self.python, "-m", "golive.bench.testinfra_facts", str(ws), CUSTOMER])
        if (REPO / "deploy" / "golive" / "flows" / "check.py").exists():
            self.measure("check", "golive", n, ws, [*golive, "check", CUSTOMER, "staging"])

    def go(self) -> int:
        counts = [int(c) for c in self.args.hosts.split(",")]
        started = time.time()
        print(f"bench: starting {2 * max(counts)} test hosts on {self.args.net}.x", file=sys.stderr)
        self.hosts.up(2 * max(counts))
        try:
            # As scripts/setup does: no timed run pays for compiling golive's modules.
            compileall.compile_dir(str(REPO / "deploy" / "golive"), quiet=1)
            self.build_releases()
            for n in counts:
                print(f"bench: {n} host(s)", file=sys.stderr)
                ws = self.workspace(n)
                # Untimed: a workspace's first golive run loads the inventory with ansible-core and
                # caches it; every later run (the ones a user repeats) starts warm.
                self.run([self.python, "-m", "golive", "validate", CUSTOMER], ws)
                self.deploy_scenarios(n, ws)
                self.inspection_scenarios(n, ws)
                self.write_json(started, counts)
        finally:
            self.hosts.down()
        print(to_markdown(self.report(started, counts)))
        return 1 if any(m.failed for m in self.results) else 0

    def report(self, started: float, counts: list[int]) -> dict:
        return {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                "repeat": self.args.repeat, "baseline_repeat": self.args.baseline_repeat or self.args.repeat,
                "hosts": counts, "results": [m.as_dict() for m in self.results], "ratios": ratios(self.results)}

    def write_json(self, started: float, counts: list[int]) -> None:
        if self.args.json:
            Path(self.args.json).write_text(json.dumps(self.report(started, counts), indent=2) + "\n")


def machine() -> dict:
    meminfo, cpuinfo = Path("/proc/meminfo").read_text(), Path("/proc/cpuinfo").read_text()
    memory = next((line.split()[1] for line in meminfo.splitlines() if line.startswith("MemTotal")), "0")
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor())
    return {"cpus": os.cpu_count(), "cpu": model, "memory_gb": round(int(memory) / 1024 / 1024, 1),
            "python": platform.python_version(), "os": platform.platform()}


def ratios(results: list[Measurement]) -> list[dict]:
    """golive / tuned Ansible (how many times faster golive is) and golive / floor, per scenario."""
    by_key = {(m.scenario, m.engine, m.hosts): m for m in results if m.median}
    rows = []
    for (scenario, engine, hosts), m in sorted(by_key.items()):
        if engine != "golive":
            continue
        row = {"scenario": scenario, "hosts": hosts, "golive_s": m.median}
        for other, key in (("ansible-playbook", "ansible_over_golive"), ("floor", "golive_over_floor"),
                           ("testinfra", "testinfra_over_golive")):
            peer = by_key.get((scenario, other, hosts))
            if peer:
                row[key] = round(peer.median / m.median if key != "golive_over_floor" else m.median / peer.median, 2)
        if scenario == "drift":
            ssh = by_key.get(("ssh true", "openssh", hosts))
            if ssh:
                row["golive_over_ssh_true"] = round(m.median / ssh.median, 2)
        rows.append(row)
    return rows


def to_markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"golive bench, {report['started']}: {m['cpus']} cores ({m['cpu']}), {m['memory_gb']} GB, "
             f"Python {m['python']}; medians, seconds (min-max) of the runs counted; peak controller MB", "",
             "| scenario | engine | hosts | median s | min-max s | runs | peak MB |", "|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        if r["failed"]:
            lines.append(f"| {r['scenario']} | {r['engine']} | {r['hosts']} | FAILED | {r['failed'][:60]} | | |")
            continue
        lines.append(f"| {r['scenario']} | {r['engine']} | {r['hosts']} | {r['median']:.2f} | "
                     f"{r['min']:.2f}-{r['max']:.2f} | {len(r['seconds'])} | {r['peak_rss_mb_max']:.0f} |")
    lines += ["", "| scenario | hosts | golive s | Ansible / golive | golive / floor | other |",
              "|---|---|---|---|---|---|"]
    for r in report["ratios"]:
        other = ", ".join(f"{k} {v}" for k, v in r.items() if k in ("testinfra_over_golive", "golive_over_ssh_true"))
        lines.append(f"| {r['scenario']} | {r['hosts']} | {r['golive_s']:.2f} | {r.get('ansible_over_golive', '-')}"
                     f" | {r.get('golive_over_floor', '-')} | {other} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", default="1,10,30", help="host counts (default 1,10,30)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline-repeat", type=int,
                        help="runs of the Ansible and Testinfra baselines (default: --repeat)")
    parser.add_argument("--json", help="write the results as JSON here (after every host count)")
    parser.add_argument("--engines", help="comma list (default: every available engine)")
    parser.add_argument("--net", default="127.0.90", help="test host network (default 127.0.90)")
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "golive-bench"))
    return Bench(parser.parse_args(argv)).go()
