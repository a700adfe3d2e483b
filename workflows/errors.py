"""The one exception type the domain raises when a rule refuses a request."""

from __future__ import annotations


class DomainError(Exception):
    """A request broke a business rule; nothing was changed.

    `code` is stable and machine-readable (the portal translates by it), `message` is an
    English sentence with ``{param}`` placeholders filled from `params`.
    """

    def __init__(self, code: str, message: str, **params: object) -> None:
        self.code = code
        self.message = message
        self.params = params
        super().__init__(code, message)

    def __str__(self) -> str:
        try:
            return self.message.format(**self.params)
        except (KeyError, IndexError, ValueError):
            # A bad template must never hide the original error behind a formatting one.
            return self.message
