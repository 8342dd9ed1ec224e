"""One base exception for everything the dispatcher raises on purpose."""

from __future__ import annotations


class DispatcherError(Exception):
    """Base of every error the dispatcher raises deliberately; its text says what to fix."""

    exit_code = 1


class ConfigError(DispatcherError):
    """A configuration value is missing or wrong; the message names the key."""

    exit_code = 2


class InputError(DispatcherError):
    """Input handed to the dispatcher (a message, a file) is malformed; ``field`` names the
    message field at fault when one is (the HTTP API answers it as ``{"field": ...}``)."""

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DatabaseError(DispatcherError):
    """Postgres could not be started or reached."""

    exit_code = 1
