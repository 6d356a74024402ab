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
