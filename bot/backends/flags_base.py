"""What every flag vendor shares: the FlagProvider verbs, built on reading and switching one flag."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from bot.backends.base import FlagState


class OnOffFlags(ABC):
    @abstractmethod
    def _read(self, key: str) -> FlagState:
        """The flag's state now (on=None if the vendor does not know it or will not say)."""

    @abstractmethod
    def _switch(self, key: str, *, on: bool) -> FlagState:
        """Turn the flag on or off; return the state the vendor reports after."""

    def states(self, keys: Sequence[str]) -> list[FlagState]:
        return [self._read(key) for key in keys]

    def turn_off(self, key: str) -> FlagState:
        return self._switch(key, on=False)

    def restore(self, state: FlagState) -> FlagState:
        if state.on is None:
            return self._read(state.key)  # nothing was known before, so nothing is put back
        return self._switch(state.key, on=state.on)
