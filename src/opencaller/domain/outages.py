"""Whether a failure means the database is out of reach (then the caller says "try again
later" instead of reporting a fault), and the one log line that describes it. The layers
above the domain ask here rather than reaching into storage."""

from __future__ import annotations

from ..storage.outage import describe, is_unavailable

__all__ = ["describe", "is_unavailable"]
