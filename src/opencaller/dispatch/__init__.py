"""Dispatch: the durable call queue and the workers that drain it."""
