"""Domain rules: authorizations, limits, idempotency, repeats, billing. No HTTP here."""
