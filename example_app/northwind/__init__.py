"""Northwind MES: plant-floor work orders, shifts and company settings (golive's example product).

Stdlib only: it runs with the host's /usr/bin/python3, from a release directory that golive unpacks.
"""
