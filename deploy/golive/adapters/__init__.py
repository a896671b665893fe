"""Adapters at the edge: files, YAML, Ansible, Jinja2, SSH/pyinfra, Testinfra."""
