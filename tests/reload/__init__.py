"""Tests of the reload backends and host-side probes against real supervisord, processes and HTTP servers."""
