"""`xib demo`: the whole pipeline on the embedded default, and its summary."""

from xib.commands import command  # noqa: F401
