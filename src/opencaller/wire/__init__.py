"""The uCaller v1.0 wire protocol: routing, arguments, authentication, response shapes."""
