"""The HTTP API: an ASGI application over a `Flowkernel`, and the API tokens it accepts."""

from engine.http.app import create_app
from engine.http.tokens import ApiTokens, IssuedToken, TokenInfo

__all__ = ["ApiTokens", "IssuedToken", "TokenInfo", "create_app"]
