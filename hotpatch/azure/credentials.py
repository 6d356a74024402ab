"""Credentials: DefaultAzureCredential, a user-assigned managed identity, or a sandbox token."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from azure.core.credentials import AccessToken, AccessTokenInfo

if TYPE_CHECKING:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
    from azure.identity.aio import DefaultAzureCredential as AioDefaultAzureCredential
    from azure.identity.aio import ManagedIdentityCredential as AioManagedIdentityCredential

#: Tokens are requested for Azure Resource Manager.
ARM_SCOPE = "https://management.azure.com/.default"


class StaticTokenCredential:
    """Hands out one fixed bearer token: for the local sandbox, which accepts any token."""

    def __init__(self, token: str = "sandbox-token", lifetime_seconds: int = 3600) -> None:
        self.token = token
        self.lifetime_seconds = lifetime_seconds

    def _expires(self) -> int:
        return int(time.time()) + self.lifetime_seconds

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, self._expires())

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(self.token, self._expires())


class AsyncStaticTokenCredential:
    """The async twin of StaticTokenCredential, for the `aio` clients."""

    def __init__(self, token: str = "sandbox-token", lifetime_seconds: int = 3600) -> None:
        self._sync = StaticTokenCredential(token, lifetime_seconds)

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return self._sync.get_token(*scopes)

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return self._sync.get_token_info(*scopes)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> AsyncStaticTokenCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def azure_credential(
    managed_identity_client_id: str | None = None,
) -> DefaultAzureCredential | ManagedIdentityCredential:
    """DefaultAzureCredential, or the user-assigned managed identity named by its client id."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if managed_identity_client_id:
        return ManagedIdentityCredential(client_id=managed_identity_client_id)
    return DefaultAzureCredential()


def async_azure_credential(
    managed_identity_client_id: str | None = None,
) -> AioDefaultAzureCredential | AioManagedIdentityCredential:
    """The async twin of `azure_credential`."""
    from azure.identity import aio

    if managed_identity_client_id:
        return aio.ManagedIdentityCredential(client_id=managed_identity_client_id)
    return aio.DefaultAzureCredential()
