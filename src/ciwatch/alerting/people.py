"""Who a breaking run names, among the configured `people:` (issue 13).

A run names up to three identities: the login that triggered it (`author`), and its commit's
author name and e-mail (`commit_author`, `commit_email`). Each is compared, without regard to
case or surrounding space, with every person's `names`; the people found are mentioned by the
`broken` notice, the triggering login's person first. The authors of the other commits since
the last green run (`CommitRange`: login, e-mail, name) follow, newest commit first; each
person is mentioned once.
"""

from __future__ import annotations

from collections.abc import Iterable

from ciwatch.channels.base import Person
from ciwatch.config.models import PersonSettings
from ciwatch.domain import CommitRange, Run


def _key(name: str) -> str:
    return name.strip().casefold()


class People:
    """The `people:` configuration, indexed by identity."""

    def __init__(self, settings: Iterable[PersonSettings] = ()) -> None:
        self._by_name: dict[str, Person] = {}
        for person in settings:
            found = Person(
                name=person.names[0],
                slack=person.slack,
                dingtalk=person.dingtalk,
                wecom=person.wecom,
                feishu=person.feishu,
                email=person.email,
            )
            for name in person.names:
                self._by_name.setdefault(_key(name), found)

    def __bool__(self) -> bool:
        return bool(self._by_name)

    def of(self, run: Run, commits: CommitRange | None = None) -> tuple[Person, ...]:
        """The people `run` names, then those `commits` name, each once."""
        identities: list[str | None] = [run.author, run.commit_email, run.commit_author]
        for commit in commits.commits if commits is not None else ():
            identities += [commit.login, commit.email, commit.author]
        found: dict[Person, None] = {}
        for identity in identities:
            person = self._by_name.get(_key(identity)) if identity else None
            if person is not None:
                found[person] = None
        return tuple(found)
