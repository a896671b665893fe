"""The pure core of golive: small typed values and decisions, no I/O.

Nothing under golive.core may import an I/O library (SSH, pyinfra, Ansible, Testinfra, YAML,
Jinja2, subprocess, sockets, the file system); tests/unit/test_import_boundary.py enforces it.
"""
