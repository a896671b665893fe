"""golive: take a verified release from staging to a client's production hosts."""

__version__ = "0.1.0"
