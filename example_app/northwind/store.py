"""Work orders in PostgreSQL, through the pure-Python driver (pg8000) the release ships in vendor/.

The schema this code was written for is the newest migration in its own release's migrations/
directory. It runs on exactly that schema, or on a newer one whose newer migrations are all
additive ("expand", as golive records them in its history table): code never writes into a schema
it does not know how to use, and /health says why.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from northwind.config import DatabaseConfig

CONNECT_TIMEOUT = 3


@dataclass(frozen=True)
class SchemaState:
    version: str | None  # newest applied migration, None when unknown
    problem: str = ""  # empty: this code runs on it

    @property
    def ok(self) -> bool:
        return not self.problem


def code_schema(release_root: Path) -> str | None:
    """The newest migration this release carries (e.g. "0002"), None when it carries none."""
    numbers = sorted(p.name[:4] for p in (release_root / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql")
                     if not p.name.endswith(".down.sql"))
    return numbers[-1] if numbers else None


class Store:
    def __init__(self, config: DatabaseConfig, release_root: Path) -> None:
        self.config = config
        self.code_schema = code_schema(release_root)
        vendor = str(release_root / "vendor")
        if vendor not in sys.path:
            sys.path.insert(0, vendor)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", config.schema_table):
            raise ValueError(f"[database] schema_table {config.schema_table!r} is not a plain table name")

    # -- connections ---------------------------------------------------------------------------

    def connect(self):
        import pg8000.native

        c = self.config
        return pg8000.native.Connection(c.user, host=c.host, port=c.port, database=c.name, password=c.password,
                                        timeout=CONNECT_TIMEOUT, application_name="northwind")

    def schema(self, connection) -> SchemaState:
        import pg8000.exceptions

        try:
            rows = connection.run(f"SELECT version, kind FROM {self.config.schema_table} ORDER BY version")
        except pg8000.exceptions.DatabaseError as error:
            if _code(error) == "42P01":  # undefined_table
                return SchemaState(None, "the database has no schema yet (no migration has run)")
            raise
        applied = {str(version): str(kind or "") for version, kind in rows}
        newest = max(applied) if applied else None
        wanted = self.code_schema
        if wanted is None:
            return SchemaState(newest)
        if newest is None or newest < wanted or wanted not in applied:
            return SchemaState(newest, f"schema {newest or '(none)'} is older than this code needs ({wanted}): "
                                       f"its migrations have not run")
        newer = {v: k for v, k in applied.items() if v > wanted and k != "expand"}
        if newer:
            first = min(newer)
            return SchemaState(newest, f"schema {newest} is newer than this code ({wanted}) and migration {first} "
                                       f"is {newer[first] or 'not declared additive'}: this code cannot run on it")
        return SchemaState(newest)

    def status(self) -> tuple[SchemaState, str]:
        """(schema, "ok" | what is wrong) for /health."""
        try:
            connection = self.connect()
        except Exception as error:  # refused, timeout, authentication: the database is not usable
            return SchemaState(None), f"unavailable: {_describe(error)}"
        try:
            state = self.schema(connection)
        except Exception as error:
            return SchemaState(None), f"unavailable: {_describe(error)}"
        finally:
            _close(connection)
        return state, ("ok" if state.ok else f"incompatible: {state.problem}")

    # -- work orders ---------------------------------------------------------------------------

    @property
    def _product_column(self) -> str:
        return "item_code" if (self.code_schema or "") >= "0003" else "product"

    @property
    def _has_priority(self) -> bool:
        return (self.code_schema or "") >= "0002"

    def work_orders(self) -> list[dict]:
        columns = ["id", "plant", self._product_column, "quantity", "status"] + (
            ["priority"] if self._has_priority else [])
        connection = self._usable()
        try:
            rows = connection.run(f"SELECT {', '.join(columns)} FROM work_orders ORDER BY id")
        finally:
            _close(connection)
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def add_work_order(self, order: dict) -> int:
        product = order.get(self._product_column) or order.get("product") or order.get("item_code")
        values = {"plant": str(order.get("plant") or ""), "product": str(product or ""),
                  "quantity": int(order.get("quantity") or 0)}
        if not values["plant"] or not values["product"] or values["quantity"] <= 0:
            raise ValueError(f"a work order needs plant, {self._product_column} and a positive quantity")
        columns = ["plant", self._product_column, "quantity"]
        params = {"plant": values["plant"], "product": values["product"], "quantity": values["quantity"]}
        if self._has_priority:
            columns.append("priority")
            params["priority"] = int(order.get("priority") or 3)
        placeholders = ", ".join(":" + ("product" if c == self._product_column else c) for c in columns)
        connection = self._usable()
        try:
            (new_id,), = connection.run(
                f"INSERT INTO work_orders ({', '.join(columns)}) VALUES ({placeholders}) RETURNING id", **params)
        finally:
            _close(connection)
        return int(new_id)

    def _usable(self):
        """A connection to a schema this code runs on; a StoreUnavailable error otherwise."""
        try:
            connection = self.connect()
        except Exception as error:
            raise StoreUnavailable(f"database unavailable: {_describe(error)}") from None
        try:
            state = self.schema(connection)
        except Exception as error:
            _close(connection)
            raise StoreUnavailable(f"database unavailable: {_describe(error)}") from None
        if not state.ok:
            _close(connection)
            raise StoreUnavailable(state.problem)
        return connection


class StoreUnavailable(Exception):
    pass


def _code(error: Exception) -> str:
    detail = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
    return str(detail.get("C", ""))


def _describe(error: Exception) -> str:
    detail = error.args[0] if error.args and isinstance(error.args[0], dict) else None
    if detail is not None:
        return str(detail.get("M", error))
    return str(error) or type(error).__name__


def _close(connection) -> None:
    try:
        connection.close()
    except Exception:  # closing a broken connection: nothing left to do
        pass
