"""The REST API of the lifecycle service (FastAPI): ``api.app.create_app`` builds it.

HTTP lives here only: routers parse requests and shape answers, :mod:`api.errors` maps the domain errors of
:mod:`lifecycle.errors` to RFC 9457 problem documents, :mod:`api.auth` checks bearer tokens,
:mod:`api.idempotency` makes POST retries safe. The use cases are :class:`lifecycle.services.Services`.
"""
