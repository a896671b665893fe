"""Secrets never leave golive: every string it prints passes through a Redactor."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MASK = "********"


class Redactor:
    """Replaces every known secret value, wherever it appears, by a mask."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is masked whole; tiny values would
        # mask innocent text and cannot be secret in any useful sense.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def add(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted(set(self._secrets) | {s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def data(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value


def mask_secret_vars(variables: dict[str, Any], secret_names: Iterable[str]) -> dict[str, Any]:
    names = set(secret_names)
    return {k: (MASK if k in names else v) for k, v in variables.items()}
