"""What a verb hands back to the CLI: data for --json, text for people, and its verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Outcome:
    data: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    finding: bool = False  # exit 1: a check failed, drift found, no-go
    failed: bool = False  # exit 3: hosts could not be brought to the intended state
