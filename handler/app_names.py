"""The names of one access-times table and the objects derived from it.

Identifiers cannot be bound parameters, so they are spliced into SQL: ``DB_TABLE`` is validated as a safe
identifier in ``app_settings`` and every name here is that identifier plus a fixed suffix, quoted with backticks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from handler import app_contract as contract

COUNTER_SHARDS = 32
"""Counter rows: a request updates shard ``id % COUNTER_SHARDS`` of its new row, so concurrent requests (consecutive
ids) rarely wait for each other's commit."""

_COUNT, _SCHEMA, _RECORD, _STORE = contract.TABLE_SUFFIXES


@dataclass(frozen=True)
class TableNames:
    """The names of one access-times table and its companions: ``*_name`` plain, the others quoted for SQL."""

    database: str
    table: str

    @property
    def counter_name(self) -> str:
        return f"{self.table}{_COUNT}"

    @property
    def versions_name(self) -> str:
        return f"{self.table}{_SCHEMA}"

    @property
    def record_procedure_name(self) -> str:
        """v3's procedure: the write and read in one CALL, committed by the caller (the previous release)."""
        return f"{self.table}{_RECORD}"

    @property
    def store_procedure_name(self) -> str:
        """v4's procedure: the write, the read and the COMMIT in one CALL (this release's request path)."""
        return f"{self.table}{_STORE}"

    @property
    def rows(self) -> str:
        return f"`{self.table}`"

    @property
    def counter(self) -> str:
        return f"`{self.counter_name}`"

    @property
    def versions(self) -> str:
        return f"`{self.versions_name}`"

    @property
    def record_procedure(self) -> str:
        return f"`{self.record_procedure_name}`"

    @property
    def store_procedure(self) -> str:
        return f"`{self.store_procedure_name}`"

    @property
    def lock_name(self) -> str:
        # GET_LOCK names are server-wide and at most 64 characters in MySQL 8.
        digest = hashlib.sha256(f"{self.database}.{self.table}".encode()).hexdigest()[:40]
        return f"access_times_migrate:{digest}"
