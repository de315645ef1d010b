"""Per-domain routers. Each route parses the request, calls one service function, and shapes the answer."""

API_PREFIX = "/api/v1"
"""Every REST endpoint lives under this prefix (health, readiness and metrics do not)."""
