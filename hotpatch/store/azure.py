"""The Azure store: snapshots in Blob Storage, every other record in Table Storage.

The only module that imports the storage SDKs. A snapshot is a block blob whose blocks are
staged as the sweep streams chunks and committed in one Put Block List, so a half-written
snapshot is never a blob at all; "latest" is a small pointer blob replaced only if its ETag is
still the one read when the snapshot began. Records use entity ETags: the journal and leases
insert-if-absent and update-if-unchanged.

- Put Block / Put Block List: https://learn.microsoft.com/rest/api/storageservices/put-block-list
- Conditional headers: https://learn.microsoft.com/rest/api/storageservices/specifying-conditional-headers-for-blob-service-operations
- Table ETags and optimistic concurrency:
  https://learn.microsoft.com/rest/api/storageservices/update-entity2
- Table keys may not hold '/', '\\', '#', '?' (hence digests):
  https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient

from hotpatch.errors import LeaseHeldError, StoreConflictError, StoreError
from hotpatch.ports.store import (
    DEFAULT_RETENTION,
    JournalRecord,
    JournalStatus,
    KbBlock,
    Lease,
    RingState,
    RunKind,
    RunRecord,
    SnapshotInfo,
    SnapshotWriter,
    StoredCatalog,
    Transition,
    machine_digest,
)
from hotpatch.store import snapshots
from hotpatch.store.snapshots import CHUNK_ROWS, ChunkedWriter, TransitionRow, check_run_id

KEEP_SNAPSHOTS = 10
#: The blob container (snapshots, the latest pointer, catalogs) and the prefix of every table:
#: the deployment (infra/) creates exactly these, and tests/infra checks it.
PREFIX = "hotpatch"
#: The tables, each named `<prefix><name>`.
TABLES = ("snapshots", "transitions", "runs", "journal", "rollout", "leases")
_POINTER = "latest.json"
#: A string property holds up to 64 KiB, 32K UTF-16 characters; a little under, to be safe:
#: https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model#property-types
_MAX_PROPERTY_CHARS = 30_000
#: Transitions go one entity per machine partition; a few requests in flight keep a first
#: sweep's 100,000 inserts bounded by latency rather than by one connection.
_PARALLEL_WRITES = 8
#: Entities in one entity-group transaction, at most.
_BATCH = 100


def _sortable(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _bucket(machine: str) -> str:
    """The transitions partition of a machine digest: 256 of them, so that a big sweep's
    transitions fill whole transactions (100,000 machines: ~390 a partition)."""
    return machine[:2]


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:40]


@contextmanager
def _azure(what: str) -> Iterator[None]:
    """Storage errors become StoreError naming what was being done."""
    try:
        yield
    except (StoreError, ValueError):
        raise
    except AzureError as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StoreError(f"Azure store: {what}: {message}") from error


class AzureStore(snapshots.SnapshotReads):
    """Blob container `<prefix>` for snapshots; tables `<prefix><name>` for the rest."""

    def __init__(
        self,
        blobs: BlobServiceClient,
        tables: TableServiceClient,
        *,
        prefix: str = PREFIX,
        retention: timedelta = DEFAULT_RETENTION,
        chunk_rows: int = CHUNK_ROWS,
        keep_snapshots: int = KEEP_SNAPSHOTS,
    ) -> None:
        self.retention = retention
        self.chunk_rows = chunk_rows
        self._lookup = snapshots.Lookup()
        self.keep_snapshots = keep_snapshots
        self._blobs = blobs
        self._tables_service = tables
        with _azure("creating the container and tables"):
            container = blobs.get_container_client(prefix)
            with suppress(ResourceExistsError):
                container.create_container()
            self._container: ContainerClient = container
            self._tables: dict[str, TableClient] = {
                name: tables.create_table_if_not_exists(f"{prefix}{name}") for name in TABLES
            }

    @classmethod
    def from_connection_string(cls, connection_string: str, **options: Any) -> AzureStore:
        with _azure("reading the connection string"):
            return cls(
                BlobServiceClient.from_connection_string(connection_string),
                TableServiceClient.from_connection_string(connection_string),
                **options,
            )

    @classmethod
    def from_account_url(
        cls, blob_url: str, credential: TokenCredential, **options: Any
    ) -> AzureStore:
        """`https://<account>.blob.core.windows.net`; the table endpoint is the same account's."""
        table_url = blob_url.replace(".blob.", ".table.", 1)
        return cls(
            BlobServiceClient(blob_url, credential=credential),
            TableServiceClient(endpoint=table_url, credential=credential),
            **options,
        )

    # Snapshots -------------------------------------------------------------------------------

    def _pointer(self) -> tuple[str | None, str | None]:
        """(latest run id, the pointer blob's ETag); (None, None) before the first snapshot."""
        with _azure("reading the latest-snapshot pointer"):
            try:
                download = self._container.get_blob_client(_POINTER).download_blob()
                content = json.loads(download.readall())
                return str(content["run_id"]), download.properties.etag
            except ResourceNotFoundError:
                return None, None

    def _info(self, run_id: str) -> SnapshotInfo:
        with _azure(f"reading snapshot {run_id}"):
            entity = self._tables["snapshots"].get_entity("snapshot", run_id)
        return SnapshotInfo.model_validate_json(entity["info"])

    def begin_snapshot(self, run_id: str, taken_at: datetime) -> SnapshotWriter:
        check_run_id(run_id)
        latest, etag = self._pointer()
        previous = None if latest is None else self._info(latest)
        return _Writer(self, run_id, taken_at, previous, self._reader(previous), pointer_etag=etag)

    def latest_snapshot(self) -> SnapshotInfo | None:
        latest, _ = self._pointer()
        return None if latest is None else self._info(latest)

    def trend(self, limit: int = 30) -> list[SnapshotInfo]:
        with _azure("listing snapshots"):
            found = [
                (entity["taken_at"], entity.get("RowKey", ""), entity["info"])
                for entity in self._tables["snapshots"].query_entities(
                    "committed eq true", select=["RowKey", "taken_at", "info"]
                )
            ]
        found.sort()
        return [SnapshotInfo.model_validate_json(info) for _, _, info in found[-limit:]]

    def _blob_name(self, run_id: str) -> str:
        return f"snapshots/{run_id}.snap"

    def _reader(self, info: SnapshotInfo | None) -> snapshots.RangeReader:
        blob = (
            None if info is None else self._container.get_blob_client(self._blob_name(info.run_id))
        )

        def read(start: int, end: int) -> bytes:
            if blob is None or end <= start:
                return b""
            with _azure("reading a snapshot"):
                return blob.download_blob(offset=start, length=end - start).readall()

        return read

    def _commit_snapshot(
        self,
        info: SnapshotInfo,
        blocks: list[str],
        moves: list[TransitionRow],
        pointer_etag: str | None,
    ) -> None:
        with _azure(f"committing snapshot {info.run_id}"):
            blob = self._container.get_blob_client(self._blob_name(info.run_id))
            try:
                # If-None-Match: a snapshot blob is written once.
                blob.commit_block_list(
                    [BlobBlock(block_id=block) for block in blocks],
                    match_condition=MatchConditions.IfMissing,
                )
            except ResourceExistsError as error:
                raise StoreConflictError(f"snapshot {info.run_id} already exists") from error
            table = self._tables["snapshots"]
            table.upsert_entity(
                {
                    "PartitionKey": "snapshot",
                    "RowKey": info.run_id,
                    "taken_at": _sortable(info.taken_at),
                    "info": info.model_dump_json(),
                    "committed": False,
                    "has_data": True,
                },
                mode=UpdateMode.REPLACE,
            )
            # Transitions before the pointer: history shows only those of committed snapshots.
            self._write_transitions(info, moves)
            pointer = self._container.get_blob_client(_POINTER)
            content = json.dumps({"run_id": info.run_id}).encode()
            try:
                if pointer_etag is None:
                    pointer.upload_blob(content, overwrite=False)
                else:
                    pointer.upload_blob(
                        content,
                        overwrite=True,
                        etag=pointer_etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
            except (ResourceExistsError, ResourceModifiedError) as error:
                raise StoreConflictError(
                    f"another snapshot became latest while {info.run_id} was written"
                ) from error
            table.update_entity(
                {"PartitionKey": "snapshot", "RowKey": info.run_id, "committed": True},
                mode=UpdateMode.MERGE,
            )
        self._expire(info.taken_at - self.retention)

    def _write_transitions(self, info: SnapshotInfo, moves: list[TransitionRow]) -> None:
        """Transitions in 256 partitions by machine digest, written 100 to an entity-group
        transaction (the most one may hold): a first sweep's 100,000 take ~1,100 requests.
        https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions
        """
        table = self._tables["transitions"]
        at = _sortable(info.taken_at)
        groups: dict[str, list[dict[str, Any]]] = {}
        for machine_id, before, after, codes in moves:
            machine = machine_digest(machine_id)
            groups.setdefault(_bucket(machine), []).append(
                {
                    "PartitionKey": _bucket(machine),
                    "RowKey": f"{machine}-{at}-{info.run_id}",
                    "machine_id": machine_id,
                    "from_state": before.value if before else "",
                    "to_state": after.value if after else "",
                    "at": at,
                    "run_id": info.run_id,
                    "reasons": ",".join(codes),
                }
            )
        batches = [
            group[start : start + _BATCH]
            for group in groups.values()
            for start in range(0, len(group), _BATCH)
        ]

        def write(batch: list[dict[str, Any]]) -> None:
            table.submit_transaction(
                [("upsert", entity, {"mode": UpdateMode.REPLACE}) for entity in batch]
            )

        with ThreadPoolExecutor(_PARALLEL_WRITES) as pool:
            for _ in pool.map(write, batches):
                pass

    def _expire(self, horizon: datetime) -> None:
        """Transitions older than the retention go, and snapshot blobs beyond the newest few;
        a failure here loses nothing that is still wanted."""
        try:
            table = self._tables["snapshots"]
            # Finding old transitions scans the table: once a day of horizon is enough.
            day = horizon.astimezone(UTC).date().isoformat()
            try:
                done = table.get_entity("marker", "expiry").get("day")
            except ResourceNotFoundError:
                done = None
            if done != day:
                transitions = self._tables["transitions"]
                for entity in transitions.query_entities(
                    "at lt @horizon",
                    parameters={"horizon": _sortable(horizon)},
                    select=["PartitionKey", "RowKey"],
                ):
                    transitions.delete_entity(entity["PartitionKey"], entity["RowKey"])
                table.upsert_entity(
                    {"PartitionKey": "marker", "RowKey": "expiry", "day": day},
                    mode=UpdateMode.REPLACE,
                )
            kept = sorted(
                (
                    (entity["taken_at"], entity["RowKey"])
                    for entity in table.query_entities(
                        "has_data eq true", select=["RowKey", "taken_at"]
                    )
                ),
                reverse=True,
            )
            for _, run_id in kept[self.keep_snapshots :]:
                self._container.delete_blob(self._blob_name(run_id))
                table.update_entity(
                    {"PartitionKey": "snapshot", "RowKey": run_id, "has_data": False},
                    mode=UpdateMode.MERGE,
                )
        except AzureError:
            pass  # the next commit tries again

    # History ---------------------------------------------------------------------------------

    def history(self, machine_id: str) -> list[Transition]:
        machine = machine_digest(machine_id)
        with _azure("reading a machine's history"):
            latest, _ = self._pointer()
            committed = {
                entity["RowKey"]
                for entity in self._tables["snapshots"].query_entities(
                    "committed eq true", select=["RowKey"]
                )
            } | {latest}
            found = [
                _transition(entity)
                for entity in self._tables["transitions"].query_entities(
                    "PartitionKey eq @bucket and RowKey gt @low and RowKey lt @high",
                    # '-' < '.' in ASCII: every RowKey of this machine lies between the two.
                    parameters={
                        "bucket": _bucket(machine),
                        "low": machine + "-",
                        "high": machine + ".",
                    },
                )
                if entity["run_id"] in committed
            ]
        return sorted(found, key=lambda t: t.at)

    def transitions(self, run_id: str) -> list[Transition]:
        # Partitioned by machine: a run's transitions are read by a filtered scan of the table,
        # which holds only changes (a steady sweep adds a few percent of the estate).
        check_run_id(run_id)
        with _azure(f"reading the transitions of run {run_id}"):
            try:
                entity = self._tables["snapshots"].get_entity("snapshot", run_id)
            except ResourceNotFoundError:
                return []
            if not entity.get("committed") and self._pointer()[0] != run_id:
                return []  # its commit did not finish: history does not show them either
            return [
                _transition(entity)
                for entity in self._tables["transitions"].query_entities(
                    "run_id eq @run", parameters={"run": run_id}
                )
            ]

    # Runs ------------------------------------------------------------------------------------

    def save_run(self, run: RunRecord) -> None:
        check_run_id(run.id)
        record = run.model_dump_json()
        entity = {
            "PartitionKey": "run",
            "RowKey": run.id,
            "kind": run.kind.value,
            "started_at": _sortable(run.started_at),
            "record": record,
        }
        with _azure(f"saving run {run.id}"):
            if len(record) > _MAX_PROPERTY_CHARS:
                # A plan's decisions outgrow a table property (64 KiB): the record goes to a blob.
                self._container.upload_blob(self._run_blob(run.id), record.encode(), overwrite=True)
                entity["record"] = ""
            self._tables["runs"].upsert_entity(entity, mode=UpdateMode.REPLACE)

    @staticmethod
    def _run_blob(run_id: str) -> str:
        return f"runs/{run_id}.json"

    def _run_record(self, entity: Any) -> RunRecord:
        record = entity["record"]
        if not record:
            record = self._container.download_blob(self._run_blob(entity["RowKey"])).readall()
        return RunRecord.model_validate_json(record)

    def run(self, run_id: str) -> RunRecord | None:
        with _azure(f"reading run {run_id}"):
            try:
                return self._run_record(self._tables["runs"].get_entity("run", run_id))
            except ResourceNotFoundError:
                return None

    def runs(self, kind: RunKind | None = None, limit: int = 50) -> list[RunRecord]:
        with _azure("listing runs"):
            table = self._tables["runs"]
            entities = list(
                table.list_entities()
                if kind is None
                else table.query_entities("kind eq @kind", parameters={"kind": kind.value})
            )
            entities.sort(key=lambda e: (e["started_at"], e["RowKey"]), reverse=True)
            return [self._run_record(entity) for entity in entities[:limit]]

    # Journal ---------------------------------------------------------------------------------

    @staticmethod
    def _journal_entity(record: JournalRecord) -> dict[str, Any]:
        return {
            "PartitionKey": machine_digest(record.machine_id),
            "RowKey": _short(record.key),
            "key": record.key,
            "status": record.status.value,
            "record": record.model_copy(update={"version": None}).model_dump_json(),
        }

    @staticmethod
    def _journal_record(entity: Any) -> JournalRecord:
        record = JournalRecord.model_validate_json(entity["record"])
        return record.model_copy(update={"version": entity.metadata["etag"]})

    def journal_start(self, record: JournalRecord) -> JournalRecord:
        with _azure(f"journalling {record.key}"):
            try:
                metadata = self._tables["journal"].create_entity(self._journal_entity(record))
            except ResourceExistsError as error:
                raise StoreConflictError(
                    f"operation {record.key} is already in the journal"
                ) from error
        return record.model_copy(update={"version": metadata["etag"]})

    def journal_update(self, record: JournalRecord) -> JournalRecord:
        if not record.version:
            raise StoreConflictError(
                f"operation {record.key}: an update must carry the version it read"
            )
        with _azure(f"journalling {record.key}"):
            try:
                metadata = self._tables["journal"].update_entity(
                    self._journal_entity(record),
                    mode=UpdateMode.REPLACE,
                    etag=record.version,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError) as error:
                raise StoreConflictError(
                    f"operation {record.key} changed since it was read (or is not journalled)"
                ) from error
        return record.model_copy(update={"version": metadata["etag"]})

    def journal_get(self, key: str) -> JournalRecord | None:
        machine = key.split("|", 1)[0]
        with _azure(f"reading {key}"):
            try:
                entity = self._tables["journal"].get_entity(machine_digest(machine), _short(key))
            except ResourceNotFoundError:
                return None
        return self._journal_record(entity)

    def journal(
        self, *, status: JournalStatus | None = None, machine_id: str | None = None
    ) -> list[JournalRecord]:
        clauses, parameters = [], {}
        if status is not None:
            clauses.append("status eq @status")
            parameters["status"] = status.value
        if machine_id is not None:
            clauses.append("PartitionKey eq @machine")
            parameters["machine"] = machine_digest(machine_id)
        with _azure("reading the journal"):
            table = self._tables["journal"]
            entities = (
                table.query_entities(" and ".join(clauses), parameters=parameters)
                if clauses
                else table.list_entities()
            )
            found = [self._journal_record(entity) for entity in entities]
        return sorted(found, key=lambda r: (r.started_at, r.key))

    # Rollout ---------------------------------------------------------------------------------

    def ring_state(self, ring: str, release: str) -> RingState | None:
        with _azure(f"reading ring {ring}"):
            try:
                entity = self._tables["rollout"].get_entity("ring", _short(f"{ring}|{release}"))
            except ResourceNotFoundError:
                return None
        return RingState.model_validate_json(entity["record"])

    def save_ring_state(self, state: RingState) -> None:
        with _azure(f"saving ring {state.ring}"):
            self._tables["rollout"].upsert_entity(
                {
                    "PartitionKey": "ring",
                    "RowKey": _short(f"{state.ring}|{state.release}"),
                    "release": state.release,
                    "record": state.model_dump_json(),
                },
                mode=UpdateMode.REPLACE,
            )

    def ring_states(self, release: str | None = None) -> list[RingState]:
        query = "PartitionKey eq 'ring'" + ("" if release is None else " and release eq @release")
        with _azure("reading ring states"):
            found = [
                RingState.model_validate_json(entity["record"])
                for entity in self._tables["rollout"].query_entities(
                    query, parameters={} if release is None else {"release": release}
                )
            ]
        return sorted(found, key=lambda s: (s.release, s.ring))

    def block_kb(self, block: KbBlock) -> None:
        with _azure(f"blocking {block.kb}"):
            self._tables["rollout"].upsert_entity(
                {"PartitionKey": "kb", "RowKey": block.kb, "record": block.model_dump_json()},
                mode=UpdateMode.REPLACE,
            )

    def unblock_kb(self, kb: str) -> None:
        with _azure(f"unblocking {kb}"):
            self._tables["rollout"].delete_entity("kb", kb)

    def kb_blocks(self) -> list[KbBlock]:
        with _azure("reading KB blocks"):
            found = [
                KbBlock.model_validate_json(entity["record"])
                for entity in self._tables["rollout"].query_entities("PartitionKey eq 'kb'")
            ]
        return sorted(found, key=lambda b: b.kb)

    # Catalogs --------------------------------------------------------------------------------

    def save_catalog(self, catalog: StoredCatalog) -> None:
        # A blob, not a table property: a catalog grows by a few rows a month past 64 KiB.
        with _azure(f"saving catalog {catalog.name}"):
            self._container.upload_blob(
                self._catalog_blob(catalog.name), catalog.model_dump_json().encode(), overwrite=True
            )

    def catalog(self, name: str) -> StoredCatalog | None:
        with _azure(f"reading catalog {name}"):
            try:
                data = self._container.download_blob(self._catalog_blob(name)).readall()
            except ResourceNotFoundError:
                return None
        return StoredCatalog.model_validate_json(data)

    @staticmethod
    def _catalog_blob(name: str) -> str:
        return f"catalogs/{name}.json"

    # Leases ----------------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, *, now: datetime, ttl: timedelta) -> Lease:
        lease = Lease(name=name, holder=holder, expires=now + ttl)
        entity = {
            "PartitionKey": "lease",
            "RowKey": name,
            "holder": holder,
            "expires": _sortable(lease.expires),
        }
        table = self._tables["leases"]
        with _azure(f"taking lease {name}"):
            try:
                table.create_entity(entity)
                return lease
            except ResourceExistsError:
                pass
            current = table.get_entity("lease", name)
            if current["holder"] != holder and _sortable(now) < current["expires"]:
                raise LeaseHeldError(
                    f"lease {name} is held by {current['holder']} until {current['expires']}"
                )
            try:
                table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=current.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError) as error:
                raise LeaseHeldError(f"lease {name} was taken by another holder") from error
        return lease

    def release_lease(self, lease: Lease) -> None:
        table = self._tables["leases"]
        with _azure(f"releasing lease {lease.name}"):
            try:
                current = table.get_entity("lease", lease.name)
                if current["holder"] == lease.holder:
                    table.delete_entity(
                        "lease",
                        lease.name,
                        etag=current.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
            except (ResourceNotFoundError, ResourceModifiedError):
                pass  # gone, or someone else's now

    def close(self) -> None:
        for table in self._tables.values():
            table.close()
        self._tables_service.close()
        self._blobs.close()


class _Writer(ChunkedWriter):
    """Chunks staged as blocks of a blob that does not exist until `commit`."""

    def __init__(
        self,
        store: AzureStore,
        run_id: str,
        taken_at: datetime,
        previous: SnapshotInfo | None,
        read_previous: snapshots.RangeReader,
        *,
        pointer_etag: str | None,
    ) -> None:
        super().__init__(run_id, taken_at, previous, read_previous, store.chunk_rows)
        self._store = store
        self._pointer_etag = pointer_etag
        self._blob = store._container.get_blob_client(store._blob_name(run_id))
        self._blocks: list[str] = []

    def _put_chunk(self, number: int, data: bytes) -> None:
        # Block ids of one blob must all have the same length (Put Block).
        block_id = base64.b64encode(f"{number:08d}".encode()).decode()
        with _azure(f"writing snapshot {self.run_id}"):
            self._blob.stage_block(block_id, data)
        self._blocks.append(block_id)

    def _finish(self, info: SnapshotInfo, transitions: list[TransitionRow]) -> None:
        self._store._commit_snapshot(info, self._blocks, transitions, self._pointer_etag)

    def _discard(self) -> None:
        # Uncommitted blocks are discarded by the service after a week; nothing to delete.
        self._blocks = []


def _transition(entity: Any) -> Transition:
    return Transition(
        machine_id=entity["machine_id"],
        from_state=entity["from_state"] or None,
        to_state=entity["to_state"] or None,
        at=datetime.strptime(entity["at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
        run_id=entity["run_id"],
        reasons=tuple(entity["reasons"].split(",")) if entity["reasons"] else (),
    )
