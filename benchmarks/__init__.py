"""Benchmarks of apphub (scripts that print JSON figures; not tests). See README.md here."""
