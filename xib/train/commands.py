"""`xib` commands of the train room."""

from xib.commands import command  # noqa: F401
