"""Flows that reach hosts: deploy, plan, rollback, status, history, unlock."""
