"""The compliance store: `open_store(HOTPATCH_STORE)` builds the one the setting names.

- `sqlite:///relative/store.db` or `sqlite:////absolute/store.db` (as SQLAlchemy writes
  them), or a directory (`store.db` and `snapshots/` inside it): the
  embedded store, the default; nothing to install.
- `https://<account>.blob.core.windows.net`: the Azure store on that account, signed in with
  `DefaultAzureCredential` (or the user-assigned managed identity named).
- A storage connection string (`DefaultEndpointsProtocol=...;AccountName=...`): the Azure store.
- `memory:`: the in-memory store (nothing survives the process; for trying things out).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hotpatch.errors import ConfigurationError
from hotpatch.ports.store import DEFAULT_RETENTION, Store

#: Where the embedded store lives unless HOTPATCH_STORE says otherwise.
DEFAULT_STORE = ".hotpatch/store"

__all__ = ["DEFAULT_STORE", "open_store"]


def open_store(
    setting: str,
    *,
    retention: timedelta = DEFAULT_RETENTION,
    managed_identity_client_id: str | None = None,
) -> Store:
    """The store `setting` names (see the module docstring); ConfigurationError if none."""
    text = setting.strip()
    if not text:
        raise ConfigurationError("HOTPATCH_STORE: empty; name a directory, sqlite:///path or URL")
    if text == "memory:":
        from hotpatch.store.memory import MemoryStore

        return MemoryStore(retention=retention)
    if text.startswith("sqlite:"):
        # As SQLAlchemy reads it: sqlite:///relative/store.db, sqlite:////absolute/store.db.
        path = text.removeprefix("sqlite:").removeprefix("//").removeprefix("/")
        if not path or path.endswith("/"):
            raise ConfigurationError(
                f"HOTPATCH_STORE: {setting!r} names no database (sqlite:///path/to/store.db)"
            )
        from hotpatch.store.embedded import EmbeddedStore

        return EmbeddedStore(Path(path), retention=retention)
    if text.startswith("https://"):
        from hotpatch.azure.credentials import azure_credential
        from hotpatch.store.azure import AzureStore

        if ".blob." not in text:
            raise ConfigurationError(
                f"HOTPATCH_STORE: {setting!r} is not a blob endpoint "
                "(https://<account>.blob.core.windows.net)"
            )
        return AzureStore.from_account_url(
            text.rstrip("/"), azure_credential(managed_identity_client_id), retention=retention
        )
    if "AccountName=" in text or "UseDevelopmentStorage=" in text:
        from hotpatch.store.azure import AzureStore

        return AzureStore.from_connection_string(text, retention=retention)
    if "://" in text:
        raise ConfigurationError(
            f"HOTPATCH_STORE: {setting!r}: use a directory, sqlite:///path, an https:// blob "
            "endpoint or a connection string"
        )
    from hotpatch.store.embedded import EmbeddedStore

    directory = Path(text)
    return EmbeddedStore(directory / "store.db", directory / "snapshots", retention=retention)
