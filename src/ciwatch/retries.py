"""Which HTTP answers are worth another try: one table for both of ciwatch's HTTP clients.

Two clients send requests and read the status of the answer:

- the pollers' client (`http.py`), GETs against a CI system's API;
- the channels' poster (`channels/transport.py`), POSTs to a chat robot, Slack or a webhook.

Both retry the same statuses: the request timed out on the server (408), came too early (425,
RFC 8470: sent again it is not early data), was throttled (429) or the server failed (5xx).
They differ in what they wait for, and the table says so in one column each:

- A channel's failed notice goes back to the outbox, and its next attempt is a time on the row:
  the answer's `Retry-After` is exactly that time, on every retryable status.
- A CI API's 429 (and a 403 that GitHub documents as a rate limit, decided by
  `http.is_rate_limit` from the headers and body, so not a row here) pauses the whole source,
  not one request: requests sent while rate limited may get an integration banned. The wait is
  `Retry-After`, else `x-ratelimit-reset`, else GitHub's secondary-limit minute (`http.py`).
  Other retryable answers are retried inside the poll with a short backoff and no
  `Retry-After`: a poll is periodic, and a target that still fails backs off at the scheduler
  (docs/collection.md).

Any other status is not retried: for a CI API an auth failure, a 404 or a provider error; for
a channel a permanent failure. Pure: no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


class Client(enum.Enum):
    """Who sends the request: the column of the table."""

    CI_API = "ci_api"  # http.py: GET against GitLab, GitHub, Jenkins
    CHANNEL = "channel"  # channels/transport.py: POST to a notification service


@dataclass(frozen=True, slots=True)
class Rule:
    """What one client does with one status."""

    retried: bool
    # The wait is the answer's `Retry-After` when it has one (else exponential backoff).
    retry_after: bool
    # A rate limit: the whole source pauses, not only this request (CI APIs).
    pauses_source: bool = False


NOT_RETRIED: Final = Rule(retried=False, retry_after=False)
BACKOFF: Final = Rule(retried=True, retry_after=False)
RETRY_AFTER: Final = Rule(retried=True, retry_after=True)
RATE_LIMIT: Final = Rule(retried=True, retry_after=True, pauses_source=True)

# The row that stands for every status from 500 on.
SERVER_ERROR: Final = 500

# status: {client: rule}. Statuses not listed (and under 500) are not retried.
POLICY: Final[Mapping[int, Mapping[Client, Rule]]] = {
    408: {Client.CI_API: BACKOFF, Client.CHANNEL: RETRY_AFTER},  # Request Timeout
    425: {Client.CI_API: BACKOFF, Client.CHANNEL: RETRY_AFTER},  # Too Early
    429: {Client.CI_API: RATE_LIMIT, Client.CHANNEL: RETRY_AFTER},  # Too Many Requests
    SERVER_ERROR: {Client.CI_API: BACKOFF, Client.CHANNEL: RETRY_AFTER},  # any 5xx
}


def rule(client: Client, status: int) -> Rule:
    """What `client` does with an answer of `status`."""
    row = POLICY.get(SERVER_ERROR if status >= 500 else status)
    return NOT_RETRIED if row is None else row[client]


def retryable(client: Client, status: int) -> bool:
    return rule(client, status).retried


def honours_retry_after(client: Client, status: int) -> bool:
    return rule(client, status).retry_after
