"""The web console: its page and files (static, in the package) and its sessions, a cookie
exchanged once for an API key."""
