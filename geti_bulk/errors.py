"""The exception tree of geti-bulk.

    GetiBulkError
    ├── ConfigError            bad flags, config file or environment; exit 2
    ├── FatalError             the whole run must stop at once; exit 3
    │   ├── AuthError          401/403: wrong, expired or missing token
    │   ├── TargetNotFoundError  organization, workspace, project or dataset missing
    │   ├── ServerFullError    507 not_enough_space, 409 limit_reached
    │   ├── LabelSetupError    labels cannot be used with this project
    │   └── JournalError       the journal cannot be read or written (disk full, I/O error)
    ├── FileError              one file cannot be uploaded; the run goes on
    │   ├── InvalidMediaError  local check or server 415/413/400
    │   └── FileChangedError   the file changed on disk while it was being sent
    └── TransientError         worth another attempt (connection, timeout, 408/429/5xx)
        └── AmbiguousError     the body may have been stored: reconcile before resending

Messages never carry the token.
"""

from __future__ import annotations


class GetiBulkError(Exception):
    """Base class for everything geti-bulk raises on purpose."""


class ConfigError(GetiBulkError):
    """Flags, config file or environment are wrong (names the key path)."""


class FatalError(GetiBulkError):
    """The run cannot go on: stop feeding, end in-flight work, exit 3."""


class AuthError(FatalError):
    """The server refused the credentials."""


class TargetNotFoundError(FatalError):
    """An organization, workspace, project or dataset does not exist."""


class ServerFullError(FatalError):
    """The server has no room for more media (507 or 409 limit_reached)."""


class LabelSetupError(FatalError):
    """Labels in the source cannot be applied to this project."""


class JournalError(FatalError):
    """The journal cannot be read or written (a full disk, an I/O error): without it a
    run cannot know what it sent, so it stops; the next run resumes from what was kept."""


class FileError(GetiBulkError):
    """This file fails; the rest of the run goes on."""


class InvalidMediaError(FileError):
    """The file is not acceptable media (locally checked or rejected by the server)."""


class FileChangedError(FileError):
    """The file's size or content changed while it was being read."""


class TransientError(GetiBulkError):
    """A failure worth retrying. `retry_after` is the server's hint in seconds, if any."""

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None, cause: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.cause = cause or (str(status) if status else "network")


class AmbiguousError(TransientError):
    """The request may have been stored by the server before it failed."""
