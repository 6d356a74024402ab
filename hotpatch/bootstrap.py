"""The composition root: settings (and, for the sandbox, a running sandbox) -> typed ports.

Every entrypoint (the CLI, the tests, the coming Functions app) builds its world here and
nowhere else: the rules (catalogs and policy), the clock, the compliance store, and a `Target`
holding the inventory and the patch operations of one endpoint (Azure, a running sandbox, or a
sandbox started for the command). The Azure SDK is imported only inside the functions that
build a real adapter, so that importing this module (or the CLI) loads none of it.
"""

from __future__ import annotations

import getpass
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hotpatch.core.calendar import Calendar
from hotpatch.core.plan import RemediationPolicy
from hotpatch.core.releases import ReleaseCatalog
from hotpatch.data import release_catalog_of
from hotpatch.errors import ConfigurationError, HotpatchError, StoreError
from hotpatch.ports import Clock, Inventory, PatchOperations, Scope, Store
from hotpatch.ports.inventory import InstallationHistory
from hotpatch.remediation import Remediation
from hotpatch.service import Rules
from hotpatch.settings import Settings
from hotpatch.store import open_store

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.credentials_async import AsyncTokenCredential

    from hotpatch.sandbox.estate import Estate

#: Opens the patch operations of a target for one batch (an async client session) and closes
#: them after; they belong to the event loop that opened them.
PatchOperationsOpener = Callable[[], AbstractAsyncContextManager[PatchOperations]]

_log = logging.getLogger(__name__)


def system_clock() -> datetime:
    """The wall clock, in UTC: the shell reads it, here, and hands it to whoever needs time."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class World:
    """What every entrypoint starts from: the settings, the rules they load, and the clock."""

    settings: Settings
    rules: Rules
    clock: Clock


def build(settings: Settings, clock: Clock = system_clock) -> World:
    """Load the catalogs and policy the settings name (ConfigurationError names a bad one)."""
    return World(settings, Rules.from_settings(settings), clock)


#: The name the refreshed release catalog is kept under in the store.
RELEASE_CATALOG = "releases"


@dataclass(frozen=True, slots=True)
class CatalogInForce:
    """The rules with the release catalog in force, where that catalog came from, and since
    when it has learnt nothing new (its refresh, or the end of the month it covers)."""

    rules: Rules
    source: str
    since: datetime


def catalog_in_force(world: World, store: Store) -> CatalogInForce:
    """The store's refreshed release catalog over the configured or shipped one.

    A stored catalog that cannot be read or no longer validates is a logged warning, and the
    configured (or shipped) catalog stays in force: a bad refresh never stops a sweep.
    """
    configured = "file" if world.settings.release_catalog is not None else "shipped"
    try:
        stored = store.catalog(RELEASE_CATALOG)
        if stored is not None:
            releases = release_catalog_of(f"the store's {RELEASE_CATALOG}", stored.document)
            return CatalogInForce(
                _with_releases(world.rules, releases), "store", stored.refreshed_at
            )
    except (HotpatchError, ValueError) as error:
        _log.warning(
            "the stored release catalog is not used (%s); the %s one is", error, configured
        )
    return CatalogInForce(world.rules, configured, _covered_until(world.rules.releases))


def _with_releases(rules: Rules, releases: ReleaseCatalog) -> Rules:
    return Rules(
        images=rules.images,
        releases=releases,
        calendar=Calendar(releases, rules.policy.month_overrides),
        policy=rules.policy,
    )


def _covered_until(releases: ReleaseCatalog) -> datetime:
    """The first instant the catalog knows nothing of: the start of the month after the one it
    covers through."""
    month = releases.covers_through
    if month is None:
        return datetime(1970, 1, 1, tzinfo=UTC)
    after = month.shift(1)
    return datetime(after.year, after.month, 1, tzinfo=UTC)


@contextmanager
def compliance_store(settings: Settings) -> Iterator[Store]:
    """The store `HOTPATCH_STORE` names, open for the block and closed after it.

    A setting that names no store, or one that cannot be opened (a path where no directory can
    be made, an account the identity may not use), is a ConfigurationError naming the setting;
    its value is not repeated, since a connection string carries the account key.
    """
    store = open_compliance_store(settings)
    try:
        yield store
    finally:
        store.close()


def open_compliance_store(settings: Settings) -> Store:
    """The store `HOTPATCH_STORE` names, open until its `close` (a Function App instance keeps
    it for its life); the same errors as `compliance_store`."""
    try:
        return open_store(
            settings.store, managed_identity_client_id=settings.managed_identity_client_id
        )
    except ConfigurationError:
        raise
    except (StoreError, ValueError) as error:
        raise ConfigurationError(f"HOTPATCH_STORE: cannot open the store: {error}") from error


def operator(settings: Settings) -> str:
    """Who a run record says ran it: the managed identity the settings name, else the signed-in
    user at this host."""
    if settings.managed_identity_client_id:
        return f"managed identity {settings.managed_identity_client_id}"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        user = "unknown user"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class SandboxEndpoint:
    """A sandbox's HTTPS address and the CA certificate its clients must trust."""

    base_url: str
    ca_file: Path


@dataclass(frozen=True, slots=True)
class Target:
    """Where the use cases talk: Azure, a running sandbox, or one started for the command."""

    inventory: Inventory
    scope: Scope
    patch_operations: PatchOperationsOpener
    #: Recent installations, as Resource Graph lists them (how a journal settles a lost answer).
    installations: InstallationHistory
    #: The sandbox behind the ports, when it is one.
    sandbox: SandboxEndpoint | None = None
    #: The instant a generated estate is observed at: the default `now` of a sweep over it.
    as_of: datetime | None = None


def scope_of(settings: Settings) -> Scope:
    return Scope(settings.subscriptions, settings.management_groups)


@contextmanager
def azure_target(settings: Settings) -> Iterator[Target]:
    """Resource Graph and Compute in Azure, as the identity the settings name."""
    from hotpatch.azure.compute import ARM_ENDPOINT
    from hotpatch.azure.credentials import async_azure_credential, azure_credential

    identity = settings.managed_identity_client_id
    with (
        azure_credential(identity) as credential,
        _target(
            credential,
            lambda: async_azure_credential(identity),
            base_url=ARM_ENDPOINT,
            ca_file=None,
            scope=scope_of(settings),
        ) as target,
    ):
        yield target


@contextmanager
def sandbox_target(
    endpoint: SandboxEndpoint, *, scope: Scope | None = None, as_of: datetime | None = None
) -> Iterator[Target]:
    """A running sandbox (`hotpatch sandbox serve`), through the same real adapters over TLS.

    The sandbox takes any token; `scope` is asked of it as of Azure (default: the tenant, its
    whole estate). ConfigurationError when the CA file cannot be read or the sandbox does not
    answer TLS with it: a wrong path or URL is not an outage.
    """
    from hotpatch.azure.credentials import AsyncStaticTokenCredential, StaticTokenCredential

    _check_ca_file(endpoint.ca_file)
    _check_reachable(endpoint)
    with _target(
        StaticTokenCredential(),
        AsyncStaticTokenCredential,
        base_url=endpoint.base_url,
        ca_file=endpoint.ca_file,
        scope=scope or Scope(),
        sandbox=endpoint,
        as_of=as_of,
    ) as target:
        yield target


@contextmanager
def in_process_sandbox(estate: Estate, as_of: datetime) -> Iterator[Target]:
    """Start a sandbox serving `estate` for the length of the block, and target it."""
    from hotpatch.sandbox.session import running_sandbox

    with running_sandbox(estate) as sandbox:
        endpoint = SandboxEndpoint(sandbox.base_url, sandbox.ca_path)
        with sandbox_target(endpoint, as_of=as_of) as target:
            yield target


@contextmanager
def _target(
    credential: TokenCredential,
    async_credential: Callable[[], AsyncTokenCredential],
    *,
    base_url: str,
    ca_file: Path | None,
    scope: Scope,
    sandbox: SandboxEndpoint | None = None,
    as_of: datetime | None = None,
) -> Iterator[Target]:
    from hotpatch.azure.compute import ComputePatchOperations
    from hotpatch.azure.resource_graph import ResourceGraphInventory, resource_graph_client

    verify = str(ca_file) if ca_file is not None else None
    # The sandbox's base URL stands for ARM's; in Azure the client's own default is used.
    graph_url = base_url if sandbox is not None else None
    client = resource_graph_client(credential, base_url=graph_url, connection_verify=verify)

    @asynccontextmanager
    async def patch_operations() -> AsyncIterator[PatchOperations]:
        opened = async_credential()
        try:
            async with ComputePatchOperations(
                credential=opened, base_url=base_url, connection_verify=verify or True
            ) as operations:
                yield operations
        finally:
            await opened.close()

    with client:
        inventory = ResourceGraphInventory(client)
        yield Target(inventory, scope, patch_operations, inventory, sandbox, as_of)


def rehearsal_clock(now: datetime, monotonic: Callable[[], float] = time.monotonic) -> Clock:
    """A clock that reads `now` at first and then runs at the wall clock's pace: the clock of
    a run told to act as of another instant (`--now`), whose records still need real order."""
    started = monotonic()
    return lambda: now + timedelta(seconds=monotonic() - started)


def remediation(
    world: World,
    target: Target,
    store: Store,
    policy: RemediationPolicy,
    *,
    clock: Clock,
    on_progress: Callable[[str], None] | None = None,
) -> Remediation:
    """The remediation use case over one target and one store, under `policy`, planning by the
    calendar of the release catalog in force over that store."""
    return Remediation(
        store=store,
        patch_operations=target.patch_operations,
        installations=target.installations,
        scope=target.scope,
        policy=policy,
        calendar=catalog_in_force(world, store).rules.calendar,
        clock=clock,
        who=operator(world.settings),
        on_progress=on_progress,
    )


def _check_ca_file(path: Path) -> None:
    try:
        text = path.read_bytes()
    except OSError as error:
        raise ConfigurationError(
            f"sandbox CA file {path}: cannot read: {error.strerror or error}"
        ) from error
    if b"-----BEGIN CERTIFICATE-----" not in text:
        raise ConfigurationError(
            f"sandbox CA file {path}: not a PEM certificate (the CA that `sandbox serve` printed)"
        )


def _check_reachable(endpoint: SandboxEndpoint, timeout: float = 5.0) -> None:
    """One TLS handshake with the sandbox before any work: a wrong URL or CA is the operator's
    to fix (ConfigurationError), not an outage to retry with backoff for a minute."""
    parts = urlsplit(endpoint.base_url)
    host, port = parts.hostname or "", parts.port or 443
    try:
        context = ssl.create_default_context(cafile=str(endpoint.ca_file))
    except (ssl.SSLError, ValueError) as error:
        raise ConfigurationError(
            f"sandbox CA file {endpoint.ca_file}: not a usable certificate ({error})"
        ) from error
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            pass
    except ssl.SSLCertVerificationError as error:
        raise ConfigurationError(
            f"sandbox {endpoint.base_url}: its certificate is not signed by "
            f"{endpoint.ca_file} ({error.verify_message})"
        ) from error
    except ssl.SSLError as error:
        raise ConfigurationError(
            f"sandbox {endpoint.base_url}: no TLS handshake ({error.reason or error})"
        ) from error
    except OSError as error:
        raise ConfigurationError(
            f"sandbox {endpoint.base_url}: cannot connect: {error.strerror or error}"
        ) from error
