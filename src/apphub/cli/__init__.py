"""The `apphub` command."""
