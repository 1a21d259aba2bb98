"""Who runs an operation: a user of an account, or the system actor."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Actor:
    """A user of one account (with groups), or the system actor used by integrations.

    The system actor may fire hidden methods. A system actor with `account_id=None` reaches
    every account; one with an account is confined to it.
    """

    user_id: int | None
    account_id: int | None
    groups: frozenset[str] = field(default_factory=frozenset)
    is_system: bool = False

    @classmethod
    def user(cls, user_id: int, account_id: int | None, groups: tuple[str, ...] = ()) -> Actor:
        """A user of `account_id`, member of `groups`."""
        return cls(user_id=user_id, account_id=account_id, groups=frozenset(groups))

    @classmethod
    def system(cls, account_id: int | None = None) -> Actor:
        """The system actor, for all accounts or confined to one."""
        return cls(user_id=None, account_id=account_id, is_system=True)

    def reaches(self, account_id: int | None) -> bool:
        """Whether this actor may read or change data of `account_id`."""
        if self.is_system and self.account_id is None:
            return True
        return account_id is None or account_id == self.account_id


SYSTEM = Actor.system()
"""The system actor of the whole platform."""
