"""The web dashboard: customers under /dashboard, the operator under /admin.

Server-rendered pages (Starlette + Jinja2), a little hand-written JavaScript for copy buttons
and in-place filtering, and no external resources at all.

The routes are assembled in ``routes.py``; this package module imports nothing, so a view
that takes a sibling (``from .. import fmt``) never runs it half-initialised.
"""
