"""Every accepted version as a git commit: log, diff, rollback, push (DESIGN §4 `history`)."""
