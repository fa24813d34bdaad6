"""SIP trunk provider: a small asyncio user agent (UDP) for flash calls, voice codes and
inbound verification calls. Messages are parsed and formatted with ``sipmessage``."""
