"""The sync engine: from an accepted config.ini version to every service's files, reloads and health."""
