"""The HTTP API: an ASGI application over a `Flowkernel`, and the API tokens it accepts."""

from flowkernel.http.app import create_app
from flowkernel.http.tokens import ApiTokens, IssuedToken, TokenInfo

__all__ = ["ApiTokens", "IssuedToken", "TokenInfo", "create_app"]
