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
