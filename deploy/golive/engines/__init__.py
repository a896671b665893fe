"""Engines other than golive's own pyinfra flows; chosen with --engine."""
