"""`xib` commands of the models room."""

from xib.commands import command  # noqa: F401
