"""The fraud guard before every call, and routing that follows conversion (docs/antifraud.md).

signals (what a call is counted under) → counters (Redis or the database) → decisions (the
rules) → guard (the one call initCall makes) with journal (refusals, blocks), geo
(geo-permissions), ranges (high-risk list) and routing (flash or voice by conversion)."""
