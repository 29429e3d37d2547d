"""The operator dashboard's parts: session and CSRF, redaction, view models, rendering.

The routes live in `receiver.dashboard.routes`; templates in `receiver/dashboard/templates/admin/`.
"""

from __future__ import annotations
