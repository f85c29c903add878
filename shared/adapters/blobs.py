"""Blob Storage adapter: email bodies too large for a table property live here."""

from __future__ import annotations

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings

from shared.errors import TransientError

BODIES_CONTAINER = "bodies"
CONTAINERS = (BODIES_CONTAINER,)


class BlobBodyStore:
    """Keeps text blobs by name in one container."""

    def __init__(self, service: BlobServiceClient, container: str = BODIES_CONTAINER) -> None:
        self._service = service
        self._container = service.get_container_client(container)

    def ensure_container(self) -> None:
        """Create the container when it does not exist yet."""
        try:
            self._container.create_container()
        except ResourceExistsError:
            return

    def put_text(self, name: str, text: str, content_type: str) -> None:
        """Write (or overwrite) a UTF-8 text blob."""
        settings = ContentSettings(content_type=f"{content_type}; charset=utf-8")
        try:
            self._container.upload_blob(
                name, text.encode("utf-8"), overwrite=True, content_settings=settings
            )
        except AzureError as error:
            msg = f"writing blob in {self._container.container_name} failed"
            raise TransientError(msg) from error

    def get_text(self, name: str) -> str | None:
        """Return a text blob, or ``None`` when it does not exist."""
        try:
            data = self._container.download_blob(name).readall()
        except ResourceNotFoundError:
            return None
        except AzureError as error:
            msg = f"reading blob in {self._container.container_name} failed"
            raise TransientError(msg) from error
        return data.decode("utf-8")

    def delete(self, name: str) -> None:
        """Delete a blob; succeeds when it is already gone."""
        try:
            self._container.delete_blob(name)
        except ResourceNotFoundError:
            return
        except AzureError as error:
            msg = f"deleting blob in {self._container.container_name} failed"
            raise TransientError(msg) from error
