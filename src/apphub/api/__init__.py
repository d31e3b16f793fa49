"""The HTTP API: routers, authentication, error shapes, and Websoft9's legacy routes."""
