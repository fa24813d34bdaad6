"""opencaller: self-hostable phone-number verification speaking the uCaller API v1.0."""

__version__ = "0.1.0"
