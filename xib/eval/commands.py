"""`xib` commands of the eval room."""

from xib.commands import command  # noqa: F401
