"""The sandbox's Resource Graph: raw rows in DuckDB tables, KQL run with duckdb-kql, scoped.

Rows are stored exactly as Resource Graph returns them (docs/raw-export.md). The tables live in
a private schema; a query runs on its thread's own cursor, whose temporary views of the same
names hold only the rows of the subscriptions in scope, so it cannot see outside its scope
whatever KQL it contains.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

import duckdb
import duckdb_kql

from hotpatch.bulk import collector_paused
from hotpatch.sandbox.kql_guard import REFUSED, QueryRefusedError, vet
from hotpatch.sandbox.query_limits import (
    QueryLimits,
    QueryStoppedError,
    QueryTicket,
    StopReason,
    Watchdog,
)

#: The Resource Graph tables the sandbox holds. Each resource type lives in the table where
#: Azure keeps it: Uniform scale set instances (`microsoft.compute/virtualmachinescalesets/
#: virtualmachines`) in `computeresources`, not `resources`, so a query of the wrong table finds
#: nothing here either. https://learn.microsoft.com/azure/governance/resource-graph/reference/supported-tables-resources
TABLES = (
    "resources",
    "computeresources",
    "patchassessmentresources",
    "patchinstallationresources",
)

#: Resource Graph's columns, the same for every one of these tables (`kind` is usually "", and
#: `managedBy`, `sku`, `plan`, `identity`, `zones`, `extendedLocation` often null); the dynamic
#: ones are stored as JSON. Rows are loaded by name, so a row without a column loads it as null.
#: These are ARM's generic resource fields plus `resourceGroup`, `subscriptionId` and `tenantId`:
#: https://learn.microsoft.com/python/api/azure-mgmt-resource/azure.mgmt.resource.resources.models.genericresource
#: and the tables: https://learn.microsoft.com/azure/governance/resource-graph/concepts/query-language
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "VARCHAR"),
    ("name", "VARCHAR"),
    ("type", "VARCHAR"),
    ("tenantId", "VARCHAR"),
    ("kind", "VARCHAR"),
    ("location", "VARCHAR"),
    ("resourceGroup", "VARCHAR"),
    ("subscriptionId", "VARCHAR"),
    ("managedBy", "VARCHAR"),
    ("sku", "JSON"),
    ("plan", "JSON"),
    ("properties", "JSON"),
    ("tags", "JSON"),
    ("identity", "JSON"),
    ("zones", "JSON"),
    ("extendedLocation", "JSON"),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)

_STORE = "store"
_OTHER_DATABASE = re.compile(r"\b(?:database|cluster)\s*\(", re.IGNORECASE)
#: Operators a Resource Graph query may start with, meaning "the Resources table".
_IMPLICIT_TABLE = re.compile(
    r"^\s*(?:\||where\b|project\b|project-away\b|extend\b|summarize\b|limit\b|take\b|top\b|"
    r"order\b|sort\b|count\b|distinct\b|mv-expand\b|mvexpand\b|join\b|parse\b)",
    re.IGNORECASE,
)
# The sandbox spells Azure's wire constants (types, tables, id segments) itself on purpose: it is
# an independent check of hotpatch.core.resource_types, which the product code reads.
_MACHINE_TYPES = ("microsoft.compute/virtualmachines", "microsoft.hybridcompute/machines")

_LATEST = "/patchassessmentresults/latest"
_ARC_TYPE = _MACHINE_TYPES[1]
_MACHINE_FACTS_SQL = f"""
SELECT id, lower(type), subscriptionId, resourceGroup, location, tenantId,
  json_extract_string(properties, '$.extended.instanceView.powerState.code'),
  CASE WHEN lower(type) = '{_ARC_TYPE}' THEN json_extract_string(properties, '$.status') END,
  CASE WHEN lower(type) = '{_ARC_TYPE}' THEN json_extract_string(properties, '$.osVersion')
       ELSE json_extract_string(properties, '$.extended.instanceView.osVersion') END,
  CASE WHEN lower(type) = '{_ARC_TYPE}' THEN json_extract_string(properties, '$.osType')
       ELSE json_extract_string(properties, '$.storageProfile.osDisk.osType') END,
  coalesce(CAST(json_extract(properties,
      '$.osProfile.windowsConfiguration.patchSettings.enableHotpatching') AS VARCHAR) = 'true',
      false)
FROM {{store}}.resources WHERE lower(type) IN (?, ?)
"""
_LATEST_ASSESSMENTS_SQL = f"""
SELECT id, coalesce(CAST(json_extract(properties, '$.rebootPending') AS VARCHAR) = 'true', false)
FROM {{store}}.patchassessmentresources WHERE contains(lower(id), '{_LATEST}')
"""

#: Resource Graph's column types (`Column.type` in the `table` result format) by DuckDB type.
_COLUMN_TYPES = {
    "VARCHAR": "string",
    "BOOLEAN": "boolean",
    "JSON": "object",
    "TIMESTAMP": "datetime",
    "TIMESTAMP WITH TIME ZONE": "datetime",
    "DATE": "datetime",
}


class RowSource(Protocol):
    """A list of raw rows per table; `hotpatch.sandbox.estate.Estate` is one."""

    @property
    def resources(self) -> Sequence[Mapping[str, Any]]: ...

    @property
    def computeresources(self) -> Sequence[Mapping[str, Any]]: ...

    @property
    def patchassessmentresources(self) -> Sequence[Mapping[str, Any]]: ...

    @property
    def patchinstallationresources(self) -> Sequence[Mapping[str, Any]]: ...


@dataclass(slots=True)
class MachineFacts:
    """What the patch operations read of a VM or Arc machine, kept in memory.

    `os_version` follows the builds the sandbox's own installs move (the table is updated too).
    """

    id: str
    hybrid: bool
    subscription_id: str | None
    resource_group: str | None
    location: str | None
    tenant_id: str | None
    power_state: str | None
    arc_status: str | None
    os_version: str | None
    os_type: str | None
    hotpatch_enabled: bool

    @property
    def type(self) -> str:
        return _MACHINE_TYPES[1] if self.hybrid else _MACHINE_TYPES[0]


@dataclass(slots=True)
class WriteBatch:
    """Table changes applied together: one transaction per batch of settled operations."""

    deletes: dict[str, list[str]] = field(default_factory=dict)
    inserts: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    #: (resources row id, merge patch for its properties)
    resource_patches: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            any(self.deletes.values()) or any(self.inserts.values()) or self.resource_patches
        )


@dataclass(frozen=True, slots=True)
class LoadReport:
    rows: Mapping[str, int]
    seconds: float


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class QueryResult:
    """A whole query result, each row already JSON text (an object, or an array for `table`)."""

    columns: tuple[Column, ...]
    rows: list[str] = field(repr=False)

    @property
    def has_id(self) -> bool:
        return any(c.name == "id" for c in self.columns)


class QueryError(Exception):
    """The query cannot run; `kind` says why (parse, unsupported, semantic)."""

    def __init__(
        self, kind: str, message: str, line: int | None = None, column: int | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.line = line
        self.column = column


#: How queries spell the tables. Resource Graph takes any case while duckdb-kql follows Kusto's
#: case-sensitive names when it looks up a table's columns (for join and union); DuckDB itself
#: resolves every spelling to the same view.
_SPELLINGS: Mapping[str, tuple[str, ...]] = {
    "resources": ("resources", "Resources", "RESOURCES"),
    "computeresources": (
        "computeresources",
        "ComputeResources",
        "computeResources",
        "Computeresources",
        "COMPUTERESOURCES",
    ),
    "patchassessmentresources": (
        "patchassessmentresources",
        "PatchAssessmentResources",
        "patchAssessmentResources",
        "Patchassessmentresources",
        "PATCHASSESSMENTRESOURCES",
    ),
    "patchinstallationresources": (
        "patchinstallationresources",
        "PatchInstallationResources",
        "patchInstallationResources",
        "Patchinstallationresources",
        "PATCHINSTALLATIONRESOURCES",
    ),
}
_SCHEMA: Mapping[str, list[str]] = {
    spelling: list(COLUMN_NAMES) for spellings in _SPELLINGS.values() for spelling in spellings
}


class GraphStore:
    """The three tables and the queries over them; safe to use from several threads."""

    def __init__(
        self, limits: QueryLimits | None = None, *, min_rows_per_part: int = 16_384
    ) -> None:
        self.limits = limits or QueryLimits()
        #: A table is read in parts, one per DuckDB thread, only when each part gets this many.
        self.min_rows_per_part = min_rows_per_part
        # The only directory DuckDB may touch: loading writes its NDJSON files here.
        self._scratch = tempfile.mkdtemp(prefix="hotpatch-sandbox-")
        self._con = _locked_down_connection(self.limits, self._scratch)
        self._watchdog = Watchdog(self.limits)
        # A store nobody closes still gives back its watchdog thread and scratch directory.
        weakref.finalize(self, _release, self._watchdog, self._scratch)
        #: Queries stopped, by why (time, memory, client gone).
        self.stopped: dict[StopReason, int] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._machines: dict[str, MachineFacts] = {}
        self._latest: dict[str, list[str]] = {}
        self._reboot_pending: frozenset[str] = frozenset()
        self._subscriptions: frozenset[str] = frozenset()
        #: Table -> the rowids where its scoped view cuts it into parts (see `_scoped_view`).
        self._cuts: dict[str, tuple[int, ...]] = {}
        # Unguessable, so that no query text can name the unscoped tables behind the views.
        self._store = f"{_STORE}_{secrets.token_hex(8)}"
        self._con.execute(f"CREATE SCHEMA {self._store}")
        columns = ", ".join(f'"{name}" {kind}' for name, kind in COLUMNS)
        for table in TABLES:
            self._con.execute(f"CREATE TABLE {self._store}.{table} ({columns})")
        self._con.execute(f"CREATE TABLE {self._store}.{CONTAINERS_TABLE} ({columns})")
        self._reserved = _reserved_names(self._con) | {self._store}
        # Setup is over: from here on no statement may change a setting.
        self._con.execute("SET GLOBAL lock_configuration = true")

    def close(self) -> None:
        with self._lock:
            for cursor in self._cursors:
                cursor.close()
            self._cursors.clear()
        self._con.close()
        _release(self._watchdog, self._scratch)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        # A DuckDB connection must not be shared between threads; each thread keeps its own
        # cursor (creating one per statement costs more than many of the statements).
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cursor is None:
            with self._lock:
                cursor = self._con.cursor()
                self._cursors.append(cursor)
            self._local.cursor = cursor
        return cursor

    # -- loading ---------------------------------------------------------------------------

    def load(self, source: RowSource) -> LoadReport:
        """Replace the tables' contents with `source`'s rows.

        Rows go through a temporary NDJSON file and DuckDB's `read_json`, which is three orders
        of magnitude faster than inserting rows one by one.
        """
        # Loading allocates hundreds of thousands of short-lived objects next to a large estate
        # held by the caller: the cyclic collector would rescan that heap again and again.
        with collector_paused():
            try:
                return self._load(source)
            except (duckdb.InterruptException, RuntimeError) as error:
                # Ctrl-C while DuckDB works comes back as its own error: it is still Ctrl-C.
                if "interrupt" in str(error).casefold():
                    raise KeyboardInterrupt from error
                raise

    def _load(self, source: RowSource) -> LoadReport:
        started = time.perf_counter()
        counts: dict[str, int] = {}
        spec = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in COLUMNS) + "}"
        encoder = json.JSONEncoder(separators=(",", ":"), check_circular=False)
        with tempfile.TemporaryDirectory(prefix="load-", dir=self._scratch) as scratch:
            for table in TABLES:
                rows: Sequence[Mapping[str, Any]] = getattr(source, table)
                path = Path(scratch) / f"{table}.ndjson"
                # ensure_ascii output: the bytes are the text, no codec pass over 100+ MB.
                path.write_bytes("\n".join(map(encoder.encode, rows)).encode("ascii"))
                cursor = self._cursor()
                cursor.execute(f"DELETE FROM {self._store}.{table}")
                if rows:
                    cursor.execute(
                        f"INSERT INTO {self._store}.{table} BY NAME SELECT * FROM read_json(?, "
                        f"format='newline_delimited', columns={spec}, "
                        "maximum_object_size=67108864)",
                        [os.fspath(path)],
                    )
                counts[table] = len(rows)
        self._index_machines()
        self._index_assessments()
        self._index_subscriptions()
        self._index_cuts()
        return LoadReport(counts, time.perf_counter() - started)

    def _index_cuts(self) -> None:
        """Where each large table is cut so that a query's per-row work runs on every thread.

        DuckDB hands each thread one row group (122,880 rows) at a time, so a table of 100,000
        machines (one row group) was read, and its rows' JSON taken apart, on one thread while
        the others idled. Cut into `threads` rowid ranges, read as a `UNION ALL`, it is read by
        all of them. The rows and the scope are those of the whole table, and so is the order:
        where a query's answer depends on it, DuckDB reads a `UNION ALL`'s parts in turn.
        Writes later on need no new cuts: the ranges cover every rowid.
        """
        parts = self.limits.threads
        cuts: dict[str, tuple[int, ...]] = {}
        for table in TABLES:
            found = (
                self._cursor()
                .execute(f"SELECT min(rowid), max(rowid), count(*) FROM {self._store}.{table}")
                .fetchone()
            )
            if parts < 2 or found is None or found[2] < parts * self.min_rows_per_part:
                continue
            low, span = int(found[0]), int(found[1]) - int(found[0]) + 1
            cuts[table] = tuple(low + span * part // parts for part in range(1, parts))
        self._cuts = cuts

    def parts(self, table: str) -> int:
        """How many parts a query reads `table` in (one per DuckDB thread, or one)."""
        return len(self._cuts.get(table, ())) + 1

    def _scoped_view(self, table: str, scope: str) -> str:
        """The query of `table`'s view for one query: its rows in `scope`, read in parts."""
        where = f"lower(subscriptionId) IN ({scope})"
        edges: list[int | None] = [None, *self._cuts.get(table, ()), None]
        reads = []
        for low, high in pairwise(edges):
            conditions = [where]
            if low is not None:
                conditions.append(f"rowid >= {low}")
            if high is not None:
                conditions.append(f"rowid < {high}")
            reads.append(f"SELECT * FROM {self._store}.{table} WHERE {' AND '.join(conditions)}")
        return " UNION ALL ".join(reads)

    def _index_machines(self) -> None:
        # What the patch operations need of each machine, read once: answering an operation
        # must not cost a scan of the resources table.
        rows = (
            self._cursor()
            .execute(_MACHINE_FACTS_SQL.format(store=self._store), list(_MACHINE_TYPES))
            .fetchall()
        )
        self._machines = {
            str(row[0]).lower(): MachineFacts(
                id=str(row[0]),
                hybrid=row[1] == _MACHINE_TYPES[1],
                subscription_id=row[2],
                resource_group=row[3],
                location=row[4],
                tenant_id=row[5],
                power_state=row[6],
                arc_status=row[7],
                os_version=row[8],
                os_type=row[9],
                hotpatch_enabled=bool(row[10]),
            )
            for row in rows
        }

    def _index_assessments(self) -> None:
        rows = self._cursor().execute(_LATEST_ASSESSMENTS_SQL.format(store=self._store)).fetchall()
        latest: dict[str, list[str]] = {}
        pending: set[str] = set()
        for row_id, reboot_pending in rows:
            lowered = str(row_id).lower()
            machine = lowered[: lowered.index(_LATEST)]
            latest.setdefault(machine, []).append(str(row_id))
            if reboot_pending and lowered.endswith(_LATEST):
                pending.add(machine)
        self._latest = latest
        self._reboot_pending = frozenset(pending)

    def subscriptions(self) -> frozenset[str]:
        """Every subscription the tables held a row of when they were loaded, lower case."""
        return self._subscriptions

    def _index_subscriptions(self) -> None:
        rows = (
            self._cursor()
            .execute(
                " UNION ".join(
                    f"SELECT DISTINCT lower(subscriptionId) FROM {self._store}.{t}" for t in TABLES
                )
            )
            .fetchall()
        )
        self._subscriptions = frozenset(str(r[0]) for r in rows if r[0])
        self._fill_containers()

    def _fill_containers(self) -> None:
        """One `resourcecontainers` row per subscription the estate has, as Azure lists it.

        A caller finds out which requested subscriptions it can read by asking this table
        (https://learn.microsoft.com/azure/governance/resource-graph/reference/supported-tables-resources#resourcecontainers);
        the rows carry what Azure's subscription rows carry that a reader relies on.
        """
        sources = " UNION ALL ".join(
            f"SELECT lower(subscriptionId) AS sub, tenantId FROM {self._store}.{t}" for t in TABLES
        )
        properties = json.dumps(
            {
                "state": "Enabled",
                "subscriptionPolicies": {
                    "locationPlacementId": "Public_2014-09-01",
                    "quotaId": "PayAsYouGo_2014-09-01",
                    "spendingLimit": "Off",
                },
            }
        )
        cursor = self._cursor()
        cursor.execute(f"DELETE FROM {self._store}.{CONTAINERS_TABLE}")
        cursor.execute(
            f"INSERT INTO {self._store}.{CONTAINERS_TABLE} "
            '(id, name, type, "tenantId", kind, location, "resourceGroup", "subscriptionId", '
            '"managedBy", properties, tags) '
            "SELECT '/subscriptions/' || sub, 'sandbox-' || left(sub, 8), "
            f"'{SUBSCRIPTION_TYPE}', max(tenantId), '', '', '', sub, '', ?::JSON, '{{}}'::JSON "
            f"FROM ({sources}) WHERE sub IS NOT NULL AND sub <> '' GROUP BY sub ORDER BY sub",
            [properties],
        )

    # -- queries ---------------------------------------------------------------------------

    def query(
        self,
        kql: str,
        subscriptions: Collection[str],
        table_format: bool,
        now: datetime | None = None,
        ticket: QueryTicket | None = None,
    ) -> QueryResult:
        """Run `kql` over the rows of `subscriptions` only; raises QueryError for bad queries.

        `now` is what `now()` and `ago()` mean in the query (the sandbox's clock). `ticket`
        lets another thread stop the query (the client went away); the query's own limits
        (`self.limits`) stop it too, with a QueryError of kind "limit".
        """
        if _OTHER_DATABASE.search(kql):
            # Resource Graph has no database() or cluster(): here they would reach past the
            # scoped views into the unscoped tables.
            raise QueryError(
                "semantic", "database() and cluster() are not available in Resource Graph"
            )
        if _IMPLICIT_TABLE.match(kql):
            kql = "Resources " + (kql if kql.lstrip().startswith("|") else "| " + kql)
        try:
            translated = duckdb_kql.to_sql(
                kql, schema=dict(_QUERY_SCHEMA), allow_write=False, query_now=now
            )
        except duckdb_kql.KqlSyntaxError as error:
            span = error.diagnostics[0].span if error.diagnostics else None
            raise QueryError(
                "parse",
                str(error),
                span.line if span else None,
                span.column if span else None,
            ) from error
        except duckdb_kql.KqlUnsupportedError as error:
            span = error.span
            raise QueryError(
                "unsupported",
                str(error),
                span.line if span else None,
                span.column if span else None,
            ) from error
        except duckdb_kql.KqlError as error:
            raise QueryError("semantic", str(error)) from error
        if translated.unbound:
            raise QueryError("semantic", "declared query parameters have no values")
        parameters = translated.parameters or None

        return self._run(str(translated), parameters, subscriptions, table_format, ticket)

    def _run(
        self,
        sql: str,
        parameters: Any,
        subscriptions: Collection[str],
        table_format: bool,
        ticket: QueryTicket | None,
    ) -> QueryResult:
        cursor = self._cursor()
        try:
            sql = vet(sql, QUERY_TABLES, self._parse, self._reserved).sql
        except QueryRefusedError as error:
            raise QueryError("semantic", str(error)) from error
        ticket = ticket or QueryTicket()
        scope = ", ".join(_sql_string(s.lower()) for s in sorted(subscriptions)) or "NULL"
        limits = self.limits
        self._watchdog.enter(ticket)
        ticket.bind(cursor, time.monotonic() + limits.seconds)
        try:
            for table in QUERY_TABLES:
                # Temporary views belong to this thread's cursor alone: the scope of one query
                # never leaks into another's.
                cursor.execute(
                    f"CREATE OR REPLACE TEMP VIEW {table} AS {self._scoped_view(table, scope)}"
                )
            ticket.check()
            relation = cursor.sql(sql, params=parameters)
            names, types = relation.columns, [str(t) for t in relation.types]
            select = _json_rows_sql(names, types, table_format)
            # One row past the cap says the cap was reached without making the whole result.
            # Beside each row DuckDB says whether it holds a NaN or an Infinity: searching every
            # row's text for them in Python cost 0.3 s per 100,000 rows.
            rows = cursor.execute(
                f"SELECT _row, {_NON_FINITE_SQL} FROM (SELECT {select} AS _row FROM ({sql}) AS _q "
                f"LIMIT {limits.max_rows + 1}) AS _r",
                parameters,
            ).fetchall()
            ticket.check()
        except (duckdb.InterruptException, QueryStoppedError) as error:
            reason = ticket.reason or StopReason.CLIENT_GONE
            self.stopped[reason] = self.stopped.get(reason, 0) + 1
            raise _stopped(ticket, limits) from error
        except duckdb.OutOfMemoryException as error:
            raise QueryError("limit", _TOO_MUCH_MEMORY) from error
        except duckdb.Error as error:
            raise QueryError("semantic", _safe_message(error)) from error
        finally:
            ticket.unbind()
            self._watchdog.leave(ticket)
        if len(rows) > limits.max_rows:
            raise QueryError(
                "limit",
                f"The query's result has more than {limits.max_rows:,} rows, the most the "
                "sandbox keeps for one query. Narrow it with where or summarize.",
            )
        columns = tuple(Column(n, _column_type(t)) for n, t in zip(names, types, strict=True))
        return QueryResult(
            columns, [_finite_json(str(row)) if odd else str(row) for row, odd in rows]
        )

    @property
    def running_queries(self) -> int:
        """Queries running now, on any worker."""
        return self._watchdog.running

    def _parse(self, sql: str) -> str:
        found = self._cursor().execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
        return str(found[0]) if found else "{}"

    def machine_rows(
        self,
        arm_type: str,
        subscription: str,
        *,
        group: str | None,
        name: str | None,
        offset: int,
        limit: int,
    ) -> list[dict[str, Any]]:
        """`resources` rows of one type in a subscription (and group, and name), by id."""
        where = ["lower(type) = ?", "lower(subscriptionId) = ?"]
        values: list[Any] = [arm_type.lower(), subscription.lower()]
        if group is not None:
            where.append("lower(resourceGroup) = ?")
            values.append(group.lower())
        if name is not None:
            where.append("lower(name) = ?")
            values.append(name.lower())
        names = ", ".join(_sql_name(n) for n in COLUMN_NAMES)
        found = (
            self._cursor()
            .execute(
                f"SELECT {names} FROM {self._store}.resources WHERE {' AND '.join(where)} "
                "ORDER BY lower(id) LIMIT ? OFFSET ?",
                [*values, limit, offset],
            )
            .fetchall()
        )
        kinds = dict(COLUMNS)
        return [
            {
                column: _from_cell(value, kinds[column])
                for column, value in zip(COLUMN_NAMES, row, strict=True)
            }
            for row in found
        ]

    # -- machines, for the patch operations --------------------------------------------------

    def machine(self, candidate: str) -> MachineFacts | None:
        """The VM or Arc machine whose id is `candidate`, matched case-insensitively."""
        return self._machines.get(candidate.lower())

    def latest_assessment_ids(self, machine: MachineFacts) -> list[str]:
        """Ids of the machine's `patchassessmentresults/latest` row and its softwarePatches."""
        return list(self._latest.get(machine.id.lower(), ()))

    def loaded_reboot_pending(self, machine: MachineFacts) -> bool:
        """Whether the loaded data's latest assessment of the machine says a reboot pends."""
        return machine.id.lower() in self._reboot_pending

    def write(self, batch: WriteBatch) -> None:
        """Apply the batch in one transaction: deletes, then inserts, then property patches."""
        if batch.empty:
            return
        cursor = self._cursor()
        names = ", ".join(f'"{n}"' for n in COLUMN_NAMES)
        marks = "(" + ", ".join("?::JSON" if k == "JSON" else "?" for _, k in COLUMNS) + ")"
        cursor.execute("BEGIN TRANSACTION")
        try:
            for table, ids in batch.deletes.items():
                if ids:
                    places = ", ".join("?" for _ in ids)
                    cursor.execute(
                        f"DELETE FROM {self._store}.{_table(table)} WHERE id IN ({places})", ids
                    )
            for table, rows in batch.inserts.items():
                if rows:
                    values: list[Any] = []
                    for row in rows:
                        values.extend(
                            json.dumps(row.get(n)) if k == "JSON" else row.get(n)
                            for n, k in COLUMNS
                        )
                    cursor.execute(
                        f"INSERT INTO {self._store}.{_table(table)} ({names}) VALUES "
                        + ", ".join(marks for _ in rows),
                        values,
                    )
            for row_id, patch in batch.resource_patches:
                cursor.execute(
                    f"UPDATE {self._store}.resources SET properties = "
                    "json_merge_patch(coalesce(properties, '{}'::JSON), ?::JSON) WHERE id = ?",
                    [json.dumps(patch), row_id],
                )
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise

    def remember_assessment(self, machine: MachineFacts, row_ids: list[str]) -> None:
        """Record the ids now holding the machine's latest assessment (after a write)."""
        self._latest[machine.id.lower()] = row_ids

    def count(self, table: str) -> int:
        found = (
            self._cursor().execute(f"SELECT count(*) FROM {self._store}.{_table(table)}").fetchone()
        )
        return int(found[0]) if found else 0


def _table(name: str) -> str:
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}")
    return name


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _value_sql(name: str, kind: str) -> str:
    column = _sql_name(name)
    if kind.startswith("TIMESTAMP") or kind == "DATE":
        # Resource Graph writes datetimes as ISO 8601 in UTC with a Z.
        return f"strftime(CAST({column} AS TIMESTAMP), '%Y-%m-%dT%H:%M:%S.%fZ')"
    return column


def _json_rows_sql(names: Sequence[str], kinds: Sequence[str], table_format: bool) -> str:
    """A select list that renders each row as JSON text inside DuckDB (no Python per cell)."""
    values = [_value_sql(n, k) for n, k in zip(names, kinds, strict=True)]
    if table_format:
        return f"CAST(json_array({', '.join(values)}) AS VARCHAR)" if values else "'[]'"
    pairs = ", ".join(f"{_sql_string(n)}, {v}" for n, v in zip(names, values, strict=True))
    return f"CAST(json_object({pairs}) AS VARCHAR)" if pairs else "'{}'"


def _column_type(kind: str) -> str:
    if kind in _COLUMN_TYPES:
        return _COLUMN_TYPES[kind]
    if any(word in kind for word in ("INT", "HUGEINT")):
        return "integer"
    if any(word in kind for word in ("DOUBLE", "FLOAT", "DECIMAL", "REAL")):
        return "number"
    return "object" if kind.endswith("[]") or kind.startswith("STRUCT") else "string"


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else message


#: The table of subscriptions (and management groups, resource groups in Azure; here only
#: subscriptions), derived from the estate when it is loaded.
CONTAINERS_TABLE = "resourcecontainers"
SUBSCRIPTION_TYPE = "microsoft.resources/subscriptions"
#: Every table a query may read.
QUERY_TABLES = (*TABLES, CONTAINERS_TABLE)
_QUERY_SCHEMA: Mapping[str, list[str]] = {
    **_SCHEMA,
    **{
        spelling: list(COLUMN_NAMES)
        for spelling in ("resourcecontainers", "ResourceContainers", "resourceContainers")
    },
}
_TOO_MUCH_MEMORY = "The query needs more memory than the sandbox gives one query, and was stopped."
#: Whether a row's JSON text (`_row`) may hold NaN or Infinity, which DuckDB writes for
#: non-finite doubles (and keeps in loaded JSON) and JSON has not. Text that only looks so (a
#: string saying "NaN") is parsed and written again unchanged.
_NON_FINITE_SQL = "contains(_row, 'NaN') OR contains(_row, 'Infinity')"


def _locked_down_connection(limits: QueryLimits, scratch: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that reads no file but `scratch`, loads no extension, and scans no
    Python variable; the caller locks its configuration once its tables exist."""
    con = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "python_enable_replacements": False,
            "python_scan_all_frames": False,
            "memory_limit": f"{limits.memory_bytes}B",
            "threads": limits.threads,
        },
    )
    con.execute("SET GLOBAL TimeZone = 'UTC'")
    # No spilling to disk: a query that outgrows memory_limit fails instead of filling /tmp.
    con.execute("SET GLOBAL temp_directory = ''")
    con.execute(f"SET GLOBAL allowed_directories = [{_sql_string(scratch)}]")
    con.execute("SET GLOBAL enable_external_access = false")
    return con


def _release(watchdog: Watchdog, scratch: str) -> None:
    watchdog.close()
    shutil.rmtree(scratch, ignore_errors=True)


def _reserved_names(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """Names DuckDB resolves beyond the estate: its catalog views, schemas and databases, and
    its table functions (`unnest` aside, which reads only its argument)."""
    rows = con.execute(
        "SELECT lower(view_name) FROM duckdb_views() WHERE internal "
        "UNION SELECT lower(schema_name) FROM duckdb_schemas() "
        "UNION SELECT lower(database_name) FROM duckdb_databases() "
        "UNION SELECT lower(function_name) FROM duckdb_functions() "
        "WHERE function_type IN ('table', 'table_macro') AND function_name <> 'unnest'"
    ).fetchall()
    return frozenset(str(row[0]) for row in rows) | {"temp", "system", "main", "memory"}


def _stopped(ticket: QueryTicket, limits: QueryLimits) -> Exception:
    reason = ticket.reason
    if reason is StopReason.TIME:
        return QueryError(
            "limit",
            f"The query ran longer than the {limits.seconds:g} s the sandbox gives one query, "
            "and was stopped.",
        )
    if reason is StopReason.MEMORY:
        return QueryError("limit", _TOO_MUCH_MEMORY)
    return QueryStoppedError(reason or StopReason.CLIENT_GONE)


def _safe_message(error: duckdb.Error) -> str:
    """DuckDB's message, unless it could speak of files, paths or the catalog."""
    if isinstance(error, (duckdb.PermissionException, duckdb.IOException, duckdb.HTTPException)):
        return "The query cannot run in the sandbox."
    if isinstance(error, duckdb.CatalogException) and "Table with name" in str(error):
        # The same answer for every name that is not a table here: a file, a variable, a view.
        return REFUSED.format(tables=", ".join(sorted(QUERY_TABLES)))
    # Only the first line: the next ones suggest names from the catalog ("Did you mean ...").
    return _first_line(str(error))


def _finite_json(text: str) -> str:
    """The row's JSON with NaN and ±Infinity (which DuckDB writes, and JSON has not) as null."""
    value = json.loads(text, parse_constant=lambda _: None)
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _from_cell(value: Any, kind: str) -> Any:
    return json.loads(value) if kind == "JSON" and isinstance(value, str) else value
