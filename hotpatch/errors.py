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


class AzureError(HotpatchError):
    """Azure answered, or failed to answer, in a way the operation cannot recover from."""


class AzureAccessError(AzureError):
    """401/403: the identity is not signed in, or may not read (or act on) the scope."""


class ThrottledError(AzureError):
    """Still throttled (429) after every retry the policy allows."""


class QueryRejectedError(AzureError):
    """Resource Graph refused the query (400); the message is Resource Graph's own."""


class AzureUnavailableError(AzureError):
    """Server errors or dropped connections outlasted the retries."""
