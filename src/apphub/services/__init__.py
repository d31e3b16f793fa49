"""What apphub knows about each product: first-start initialisation and connection tests."""
