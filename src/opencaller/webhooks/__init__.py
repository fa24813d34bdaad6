"""Durable, signed webhook delivery (inbound verification results)."""
