"""The service's exceptions: one base, a few kinds an operator can act on."""

from __future__ import annotations


class HotpatchError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigurationError(HotpatchError):
    """A setting or an operator-supplied file is invalid; the message names it."""


class DataFileError(ConfigurationError):
    """A data file (image or release catalog) failed validation: names the file, entry and field."""


class InputError(HotpatchError):
    """An input file (an inventory export) cannot be read at all."""


class ReleasePageError(InputError):
    """Microsoft's release information page (a file or a URL) cannot be fetched or read as
    served: unreachable, too large, a changed table layout, or a row that fails validation.
    The message names the table and row; nothing of the page is used."""


class CatalogConflictError(HotpatchError):
    """A release read from the page contradicts a row already in the release catalog; an
    existing row is never changed silently, so nothing is written."""


class OutputError(HotpatchError):
    """A report or output file cannot be written (a directory, no such folder, disk full)."""


class AzureServiceError(HotpatchError):
    """Azure answered, or failed to answer, in a way the operation cannot recover from.

    Not named `AzureError`, which is azure-core's base exception: adapters catch that one and
    raise this one `from` it, and a reader must never wonder which of the two a clause means.
    """


class AzureAccessError(AzureServiceError):
    """401/403: the identity is not signed in, or may not read (or act on) the scope."""


class ThrottledError(AzureServiceError):
    """Still throttled (429) after every retry the policy allows."""


class QueryRejectedError(AzureServiceError):
    """Resource Graph refused the query (400); the message is Resource Graph's own."""


class AzureUnavailableError(AzureServiceError):
    """Server errors or dropped connections outlasted the retries."""


class PartialScopeError(AzureServiceError):
    """A configured subscription or management group could not be read: the sweep reported
    the rest, and fails unless the operator accepts a partial answer (`--allow-partial`)."""


class StoreError(HotpatchError):
    """The compliance store failed (disk full, unreachable, unreadable): nothing new may start,
    and every record it acknowledged before is kept."""


class StoreConflictError(StoreError):
    """Another writer got there first: the journal key exists, the record changed since it was
    read, or another snapshot became latest meanwhile."""


class LeaseHeldError(StoreConflictError):
    """The lease is held by another holder until it expires; the message says whom and when."""
