"""Admin REST API, ops endpoints (/healthz, /readyz, /metrics) and the live dashboard.

app.include_router(create_ops_router(services))    # no auth: probes and Prometheus
app.include_router(create_admin_router(services))  # /admin/*, bearer token required
"""

from bot.admin.ops import create_ops_router
from bot.admin.routes import create_admin_router

__all__ = ["create_admin_router", "create_ops_router"]
