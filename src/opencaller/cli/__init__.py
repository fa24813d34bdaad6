"""The command line: `opencaller serve`, `worker`, and admin commands."""
