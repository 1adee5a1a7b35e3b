"""Errors a user can act on: one clear message naming the file, row and rule."""

from __future__ import annotations


class XibError(Exception):
    """An error reported to the user as one line, never as a traceback."""


class DataError(XibError):
    """Bad input data: names the file, the row (when there is one) and the rule it broke."""

    def __init__(self, file: str, rule: str, row: int | str | None = None, detail: str = "") -> None:
        self.file, self.rule, self.row, self.detail = str(file), rule, row, detail
        where = f"{self.file}" + (f", row {row}" if row is not None else "")
        super().__init__(f"{where}: {rule}" + (f" ({detail})" if detail else ""))


EX_TEMPFAIL = 75  # sysexits.h: "temporary failure; the user is invited to retry"


class TransientError(XibError):
    """A service (tracking server, object store, DVC remote, database) did not answer or said "not now".

    One line naming the service, its URL without credentials, the cause and what was tried; a command
    that fails with it exits with EX_TEMPFAIL, and the flows retry it (and only it).
    """
