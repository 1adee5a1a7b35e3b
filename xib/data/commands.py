"""`xib` commands of the data room."""

from xib.commands import command  # noqa: F401
