"""How a service takes new configuration (reload strategies) and how we know it came back (health probes)."""
