"""golive provision CUSTOMER ENV: the environment's hosts brought to what golive.yml's `provision:`
declares (packages, groups, users, directories, files, systemd units, the user's pyinfra deploy
files), with real pyinfra operations that read facts and change only what differs. --plan reports
what those operations would change, host by host and item by item, and changes nothing.

Everything the workspace can get wrong (the declaration, a template, a group no host is in) is
found before any host is contacted (BadInput, exit 2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from golive.adapters.progress import Progress
from golive.core.errors import BadInput, Problem, merged
from golive.core.model import Host
from golive.core.outcome import Outcome
from golive.core.provision import ALL, File, Item, Provision, Service, host_items
from golive.workspace import Workspace, limited

if TYPE_CHECKING:
    from golive.adapters.provisioner import HostWork, ItemRun


def _hosts(ws: Workspace, customer: str, environment: str, only: list[str] | None) -> tuple[Host, ...]:
    """Every host of the environment, its database host included: provisioning prepares them all."""
    return limited(ws.environment(customer, environment).hosts, only, customer=customer, environment=environment)


def _declared(ws: Workspace) -> Provision:
    if ws.app.provision is None:
        raise BadInput(Problem(ws.app.source, "no 'provision:' section: declare what the hosts need "
                                              "(docs/golive-yml.md, provision)"))
    return ws.app.provision


def _unknown_groups(ws: Workspace, customer: str, provision: Provision) -> list[Problem]:
    """A section for a group no host of any customer is in would silently do nothing: a typo. (The
    declaration is the product's: a group only some customers have, like `database`, is fine.)"""
    known: set[str] = set()
    for name in dict.fromkeys([customer, *ws.customer_names()]):
        try:
            loaded = ws.customer(name)
        except BadInput:
            if name == customer:
                raise
            continue  # another customer's inventory: `golive validate` reports it
        known.update(group for env in loaded.environments for host in env.hosts for group in host.groups)
        if all(section.group in known for section in provision.groups if section.group != ALL):
            return []
    return [Problem(section.where, f"provision.{section.group}: no host of any customer is in an inventory group "
                                   f"{section.group!r} (inventories/*/hosts.yml)")
            for section in provision.groups if section.group != ALL and section.group not in known]


def _prepared(ws: Workspace, host: Host, items: tuple[Item, ...]) -> tuple[dict[str, bytes], list[Problem]]:
    """The rendered content of each file and unit item of a host (by item key), or the problems."""
    contents: dict[str, bytes] = {}
    problems: list[Problem] = []
    for item in items:
        src = item.src if isinstance(item, (File, Service)) else ""
        if not src:
            continue
        text, found = ws.renderer.render_template(host, "", src)
        problems.extend(found)
        if text is not None:
            contents[item.key] = text.encode("utf-8")
    return contents, problems


def declared_work(ws: Workspace, customer: str, hosts: tuple[Host, ...]
                  ) -> tuple[list[tuple[Host, tuple[Item, ...], dict[str, bytes]]], list[Problem]]:
    """Each host's items and rendered files, or every problem of the declaration for these hosts
    (golive validate asks too)."""
    declared = _declared(ws)
    problems = _unknown_groups(ws, customer, declared)
    work: list[tuple[Host, tuple[Item, ...], dict[str, bytes]]] = []
    for host in hosts:
        chosen = host_items(declared, host.groups)
        problems += [Problem(where, message) for where, message in chosen.problems]
        contents, found = _prepared(ws, host, chosen.items)
        problems += [p for p in found if p not in problems]
        work.append((host, chosen.items, contents))
    return work, problems


def provision(ws: Workspace, customer: str, environment: str, *, plan: bool = False, only: list[str] | None = None,
              progress: Progress | None = None) -> Outcome:
    from golive.adapters.provisioner import Provisioner  # pyinfra's operations: only where they run
    from golive.adapters.transport import Fleet

    hosts = _hosts(ws, customer, environment, only)
    work, problems = declared_work(ws, customer, hosts)
    if problems:
        raise BadInput(merged(problems))

    fleet = Fleet(hosts)
    rows: list[dict[str, Any]] = []
    try:
        connected = fleet.connect()
        provisioner = Provisioner(fleet.state, ws.root)
        reached: list[HostWork] = []
        for host, items, contents in work:
            link = connected[host.name]
            if not link.ok:
                rows.append({"host": host.name, "status": "unreachable", "error": link.error, "items": []})
                continue
            # as Ansible's become: ansible_become runs the operations with sudo
            reached.append((host.name, link.pyinfra_host, items, contents, dict(ws.template_context(host, "")),
                            bool(host.vars.get("ansible_become")), host.secret_values))
        provisioner.add_hosts(reached, plan=plan)
        if not plan:
            provisioner.execute()
        for name, *_ in reached:
            rows.append(_row(name, provisioner.runs.get(name, []), plan=plan))
    finally:
        fleet.close()
    order = [h.name for h in hosts]
    rows.sort(key=lambda row: order.index(row["host"]))
    ok = all(row["status"] not in ("failed", "unreachable") for row in rows)
    data = {"customer": customer, "environment": environment, "plan": plan, "ok": ok, "hosts": rows}
    return Outcome(data=data, text=_text(data), failed=not ok)


def _row(name: str, runs: list[ItemRun], *, plan: bool) -> dict[str, Any]:
    errors = [run.error for run in runs if run.status == "failed"]
    if errors:
        status = "failed"
    elif any(run.status in ("changed", "would_change") for run in runs):
        status = "would_change" if plan else "changed"
    else:
        status = "unchanged"
    row: dict[str, Any] = {"host": name, "status": status, "items": [run.as_dict() for run in runs]}
    if errors:
        row["error"] = "; ".join(errors)
    return row


def _text(data: dict[str, Any]) -> str:
    hosts = data["hosts"]
    verb = "provision --plan" if data["plan"] else "provision"
    counts: dict[str, int] = {}
    for row in hosts:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(counts.items()))
    lines = [f"{verb} {data['customer']}/{data['environment']}: {len(hosts)} host(s): {summary}"
             + ("" if not data["plan"] else " (nothing was changed)")]
    for row in hosts:
        items = row["items"]
        if row["status"] == "unreachable":
            lines.append(f"  {row['host']}: unreachable: {row['error']}")
            continue
        moved = [i for i in items if i["status"] in ("changed", "would_change", "failed", "not_run")]
        if not moved:
            lines.append(f"  {row['host']}: no change ({len(items)} items as declared)")
            continue
        if row["status"] == "failed":
            tally = {status: sum(i["status"] == status for i in items) for status in ("failed", "not_run", "changed")}
            lines.append(f"  {row['host']}: FAILED: {tally['failed']} failed, {tally['not_run']} not run, "
                         f"{tally['changed']} changed of {len(items)} items")
        else:
            word = {"would_change": "would change", "changed": "changed"}[row["status"]]
            lines.append(f"  {row['host']}: {word} {sum(i['status'] != 'unchanged' for i in items)} of "
                         f"{len(items)} items")
        for item in moved:
            what = {"changed": "changed", "would_change": "would change", "failed": "FAILED",
                    "not_run": "not run (an earlier item failed)"}[item["status"]]
            lines.append(f"    {item['item']}: {what}")
            if item["status"] == "failed":
                lines.append(f"      {item['error']}")
            for command in item.get("commands", []) if item["status"] != "not_run" else []:
                lines.append(f"      {command}")
            lines += [f"        {line}" for line in item.get("diff", [])]
    return "\n".join(lines)
