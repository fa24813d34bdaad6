"""Telephony: the provider interface, the built-in simulator and the SIP trunk provider."""
