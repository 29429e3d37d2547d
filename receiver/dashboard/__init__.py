"""The operator dashboard's parts: session and CSRF, redaction, view models, rendering.

The routes live in `receiver.routes.admin`; templates in `receiver/templates/admin/`.
"""

from __future__ import annotations
