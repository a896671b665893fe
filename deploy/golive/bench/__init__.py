"""scripts/bench: golive against tuned Ansible and the SSH floor (see runner.py)."""
