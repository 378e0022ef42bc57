"""Typed ingestion errors. The API maps them to HTTP statuses (413, 415, 400); this package
knows nothing about HTTP."""


class IngestError(Exception):
    """Base class: a file that cannot be ingested, with a message safe to show the user."""


class FileTooLarge(IngestError):
    """The file is larger than `max_upload_bytes` (HTTP 413)."""


class UnsupportedFileType(IngestError):
    """The file type is not allowed, or the content does not match its extension (HTTP 415)."""


class UnreadableDocument(IngestError):
    """The file is of an allowed type but cannot be parsed, or holds no text (HTTP 400)."""
