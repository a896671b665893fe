"""A host's variables as another environment would set them, computed by ansible-core itself.

Drift asks "does production differ from staging in anything but the declared variables?". Hosts
of the two environments are rarely twins (a plant host with its own host_vars, a gateway role that
only one staging host has), so comparing a production host with some staging host would report
those as drift. Instead each production host is moved, in a private copy of the inventory, out of
its environment's groups (the environment group and every group below it) and into the source
environment's group; Ansible then gives its variables with the same precedence rules as always.
What differs between the two sets is exactly what the environment contributes. The host keeps its
host_vars and its cross-environment groups, so those never count as environment drift.
"""

from __future__ import annotations

from collections.abc import Iterable

from golive.core.errors import BadInput, Problem
from golive.core.model import Host
from golive.workspace import Workspace


def as_environment(ws: Workspace, customer: str, hosts: Iterable[Host], environment: str) -> dict[str, Host | Problem]:
    """Each host as `environment` would configure it (or the Problem that stops that)."""
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.vars.manager import VariableManager

    inventory_files = ws.inventory  # loads ansible-core and the vault secrets once per process
    loaded = ws.customer(customer)
    try:
        inventory = InventoryManager(loader=inventory_files.loader, sources=[loaded.inventory_dir])
        destination = inventory.groups.get(environment)
        if destination is None:
            raise BadInput(f"environment group {environment!r} is not in the inventory of {customer!r}")
        moved = []
        for host in hosts:
            ansible_host = inventory.get_host(host.name)
            if ansible_host is None:
                continue
            for group in list(ansible_host.get_groups()):
                below_own = host.environment in {g.name for g in group.get_ancestors()}
                if group.name == host.environment or below_own:
                    group.remove_host(ansible_host)
            destination.add_host(ansible_host)
            moved.append(ansible_host)
        variables = VariableManager(loader=inventory_files.loader, inventory=inventory)
        result: dict[str, Host | Problem] = {}
        for ansible_host in moved:
            raw = variables.get_vars(host=ansible_host, include_hostvars=False, stage="all")
            # The same conversion as the workspace's own hosts: vault values decrypted and noted.
            result[ansible_host.name] = inventory_files._host(ws.app, customer, ansible_host, raw)
    except AnsibleError as error:
        raise BadInput(Problem(loaded.inventory_dir, f"cannot evaluate the inventory: {error}")) from None
    return result
