"""gevent must patch the standard library before paramiko (through pyinfra) is imported,
or paramiko's transport threads would be real threads beside gevent's hub. golive.cli calls
this first thing for verbs that reach hosts, as pyinfra's own CLI does."""

from __future__ import annotations


def patch_for_parallel_ssh() -> None:
    # ansible-core probes socket.getaddrinfo when first imported; under gevent's thread-pool
    # resolver that probe prints a spurious error, so let it probe the real one first.
    import ansible.module_utils._internal._datatag  # noqa: F401
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()
