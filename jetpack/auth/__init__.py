"""Authentication for the HTTP transports: bearer tokens, stored hashed, optionally bound to an agent."""

from jetpack.auth.tokens import TOKEN_PREFIX, NewToken, TokenRecord, TokenRegistry, looks_like_token

__all__ = ["TOKEN_PREFIX", "NewToken", "TokenRecord", "TokenRegistry", "looks_like_token"]
