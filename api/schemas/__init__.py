"""Request and response bodies of the REST API, one module per domain.

Requests forbid unknown members (a misspelt field is an error, not silently ignored); responses are what
the routers build from the services' views. Money (万元) is a decimal sent as a string, so no digit is lost
to binary floating point; dates are ISO ``YYYY-MM-DD``; times are ISO 8601 in UTC with their
Asia/Shanghai rendering alongside where people read them.
"""
