"""The Function App's own Storage Queues, reached the way the Functions host reaches them.

The host's queue bindings use the `AzureWebJobsStorage` connection: a connection string
(Azurite locally), or, identity-based, `AzureWebJobsStorage__queueServiceUri` (or
`__accountName`) with the managed identity `AzureWebJobsStorage__clientId`:
https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
Code that must put a message on such a queue itself (the HTTP API has no output binding) reads
the same settings here. Messages are base64 text, as host.json's `messageEncoding` says.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from typing import TYPE_CHECKING

from hotpatch.errors import AzureServiceError, ConfigurationError

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

CONNECTION = "AzureWebJobsStorage"


def queue_client(environ: Mapping[str, str], queue: str) -> QueueClient:
    """A client of `queue` in the storage account the `AzureWebJobsStorage` settings name;
    ConfigurationError when they name none."""
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    encode, decode = TextBase64EncodePolicy(), TextBase64DecodePolicy()
    connection = environ.get(CONNECTION, "").strip()
    if connection:
        try:
            return QueueClient.from_connection_string(
                connection, queue, message_encode_policy=encode, message_decode_policy=decode
            )
        except ValueError as error:
            raise ConfigurationError(f"{CONNECTION}: not a storage connection string") from error
    service = environ.get(f"{CONNECTION}__queueServiceUri", "").strip()
    account = environ.get(f"{CONNECTION}__accountName", "").strip()
    if not service and account:
        service = f"https://{account}.queue.core.windows.net"
    if not service:
        raise ConfigurationError(
            f"{CONNECTION}: set a connection string, or {CONNECTION}__queueServiceUri or "
            f"{CONNECTION}__accountName for an identity-based connection"
        )
    from hotpatch.azure.credentials import azure_credential

    credential = azure_credential(environ.get(f"{CONNECTION}__clientId") or None)
    return QueueClient(
        service,
        queue,
        credential=credential,
        message_encode_policy=encode,
        message_decode_policy=decode,
    )


def send(environ: Mapping[str, str], queue: str, text: str) -> str:
    """Put one message on `queue` (made if missing); the message's id."""
    from azure.core.exceptions import AzureError, ResourceExistsError

    client = queue_client(environ, queue)
    try:
        with client:
            with suppress(ResourceExistsError):
                client.create_queue()
            sent = client.send_message(text)
    except AzureError as error:
        raise AzureServiceError(f"queue {queue}: the message was not sent: {error}") from error
    return str(sent.id)
