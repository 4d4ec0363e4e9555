"""The exception tree. Errors are mapped into it at the boundary and raised `from` the cause;
only the CLI chooses exit codes::

    CiwatchError
    ├── ConfigError             bad or missing configuration (exit 2)
    ├── ProviderError           a CI server misbehaved (exit 3)
    │   ├── RateLimited         429 / 403 with no quota left; `retry_after` seconds
    │   ├── AuthFailed          401 / 403: the token is wrong or lacks scope
    │   ├── NotFound            404: the project, repo or job does not exist (or is hidden)
    │   ├── Unavailable         timeouts, 5xx, connection errors: worth retrying
    │   ├── BadPayload          the answer is not what the API documents (HTML, truncated JSON)
    │   └── InternalError       ciwatch itself failed on a target (a bug, logged with traceback)
    ├── StoreError              the database is unreachable or a write failed (exit 3)
    └── ChannelError            a notification channel refused or failed; `permanent` says
                                whether retrying can help
"""

from __future__ import annotations


class CiwatchError(Exception):
    """Base of every error ciwatch raises on purpose."""


class ConfigError(CiwatchError):
    """The configuration is missing or invalid. `problems` holds one line per problem."""

    def __init__(
        self, problems: list[str] | str, *, details: list[dict[str, object]] | None = None
    ) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        # The same problems as objects (`file`, `line`, `key`, `message`), when known: what
        # `ciwatch config check --json` prints.
        self.details = details
        super().__init__("\n".join(self.problems))


class ProviderError(CiwatchError):
    """A CI server failed or answered something unusable."""

    def __init__(self, message: str, *, target: str | None = None, status: int | None = None):
        self.target = target
        self.status = status
        super().__init__(message)


class RateLimited(ProviderError):
    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        target: str | None = None,
        status: int | None = None,
    ):
        self.retry_after = retry_after
        super().__init__(message, target=target, status=status)


class AuthFailed(ProviderError):
    pass


class NotFound(ProviderError):
    pass


class Unavailable(ProviderError):
    pass


class BadPayload(ProviderError):
    pass


class InternalError(ProviderError):
    """An unexpected exception while polling or discovering: a bug in ciwatch, not the CI
    server's fault. Recorded on the target like any poll error, so it is visible."""


class StoreError(CiwatchError):
    """The store could not be reached or a write failed (nothing was half-written)."""


class ChannelError(CiwatchError):
    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None):
        self.permanent = permanent
        self.retry_after = retry_after
        super().__init__(message)
