"""`xib` commands of the registry room."""

from xib.commands import command  # noqa: F401
