"""Apphub config center: one source of truth for the configuration of a host's services."""

__version__ = "0.1.0"
