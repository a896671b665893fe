"""Secrets never leave golive: every text it shows or writes passes through a Redactor first.

The rules (the host agent applies the same ones, golive.agent.shared.Masker; one corpus tests both):
- A secret is every value that came from a vault (an inline `!vault` value or a whole
  vault-encrypted vars file; strings, numbers, and every leaf of a list or dict, at any depth) and
  every value of a variable golive.yml marks `secret: true`. Its text is what Python's str() gives
  (`48213377`, `3.5`); booleans and nulls have no text worth masking.
- Masking happens on the raw text, before it is escaped, cut, quoted, serialised or hashed: a sink
  takes the raw text and masks it as its first step (`text`, `data`), or asks the Redactor to make
  the cut itself (`head`, `tail`), so a cut never leaves part of a secret behind.
- Each secret is also masked in the forms other code may have given it before golive sees the
  text (JSON- and repr-escaped, HTML/XML-escaped, URL-encoded, shell-quoted, Markdown-escaped, each
  line of a multi-line secret) and as its sha256 hex digest.
- Every occurrence of every form is found first and overlapping ones are merged, then each merged
  stretch becomes one MASK: two secrets that overlap in the text are both masked whole.
- Text that someone else already cut (pytest's shortened reprs, a tail another program kept) is
  masked with `cut`: a secret's suffix at the start of the text, its prefix at the end, and both
  around each cut marker (`...`) are masked too.
- Texts shorter than FLOOR characters are not masked inside free text (a 3-character secret would
  mask innocent words everywhere). Where golive knows a value is secret by its variable (inventory,
  drift, checks, schema messages) it never prints the value at all, whatever its length
  (`mask_paths`, `is_secret`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import shlex
import urllib.parse
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

MASK = "********"
FLOOR = 4  # characters; shorter secrets are masked by variable only
CUT_MARKERS = ("...", "\u2026")  # where pytest's saferepr (and others) cut a long value


def leaf_texts(value: Any) -> list[str]:
    """The texts a secret value shows as: itself, or every leaf of a list or dict (keys are names)."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (int, float)):
        return [str(value)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in leaf_texts(v)]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [t for v in value for t in leaf_texts(v)]
    return [str(value)]


def _xml(text: str) -> set[str]:
    """As XML writers escape text: in content, and in attributes (ElementTree's and saxutils' ways)."""
    content = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    attribute = content.replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;")
    return {content, attribute.replace("\t", "&#09;"), attribute.replace("\t", "&#9;")}


@lru_cache(maxsize=4096)
def forms(secret: str) -> frozenset[str]:
    """Every form of one secret text that golive masks (those of FLOOR characters or more)."""
    found = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             repr(secret)[1:-1], ascii(secret)[1:-1], html.escape(secret), html.escape(secret, quote=False),
             *_xml(secret),
             urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret), urllib.parse.quote_plus(secret),
             shlex.quote(secret), secret.replace("|", "\\|"), secret.replace("\n", " "),
             hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()}
    found.update(line.strip() for line in secret.splitlines())  # diffs and indented output split lines
    return frozenset(f for f in found if len(f) >= FLOOR)


def forms_of(secrets: Iterable[str]) -> list[str]:
    """Every form of every secret, longest first (what the host agent is sent to mask)."""
    return sorted({f for s in secrets for f in forms(s)}, key=lambda f: (-len(f), f))


def digest_forms(hex_digest: str) -> frozenset[str]:
    """A secret file's sha256 as golive might print it: whole, or its first 12 or 16 digits."""
    return frozenset({hex_digest, hex_digest[:16], hex_digest[:12]})


def _spans(text: str, found_forms: Iterable[str]) -> list[tuple[int, int]]:
    spans = []
    for form in found_forms:
        start = text.find(form)
        while start >= 0:
            spans.append((start, start + len(form)))
            start = text.find(form, start + 1)
    return spans


def _partial_spans(text: str, boundaries: Iterable[tuple[int, int]], found_forms: Iterable[str]
                   ) -> list[tuple[int, int]]:
    """At each cut (before, after): a form's prefix ending at `before`, its suffix starting at `after`."""
    spans = []
    for before, after in boundaries:
        for form in found_forms:
            for k in range(min(len(form) - 1, before), 0, -1):
                if text.startswith(form[:k], before - k):
                    spans.append((before - k, before))
                    break
            for k in range(min(len(form) - 1, len(text) - after), 0, -1):
                if text.startswith(form[-k:], after):
                    spans.append((after, after + k))
                    break
    return spans


def _apply(text: str, spans: list[tuple[int, int]]) -> str:
    if not spans:
        return text
    spans.sort()
    out, position = [], 0
    merged_start, merged_end = spans[0]
    for start, end in spans[1:] + [(len(text) + 1, len(text) + 1)]:
        if start <= merged_end:
            merged_end = max(merged_end, end)
            continue
        out.append(text[position:merged_start])
        out.append(MASK)
        position = merged_end
        merged_start, merged_end = start, end
    out.append(text[position:])
    return "".join(out)


class Redactor:
    """Masks every known secret, in every form, wherever it appears."""

    def __init__(self, secrets: Iterable[Any] = ()) -> None:
        self._texts: set[str] = set()  # the raw secret texts (FLOOR or longer)
        self._forms: list[str] = []
        self._extra: set[str] = set()  # other forms: digests of secret files
        self._shortest = 0
        self.add(secrets)

    def add(self, secrets: Iterable[Any]) -> None:
        """Secret values of any type (a vault's number, list or dict too)."""
        texts = {t for value in secrets for t in leaf_texts(value) if len(t) >= FLOOR}
        if texts - self._texts:
            self._texts |= texts
            self._rebuild()

    def add_digest(self, hex_digest: str) -> None:
        """A secret file's sha256: never shown, not even its first digits."""
        if not digest_forms(hex_digest) <= self._extra:
            self._extra |= digest_forms(hex_digest)
            self._rebuild()

    def _rebuild(self) -> None:
        self._forms = sorted(set(forms_of(self._texts)) | self._extra, key=lambda f: (-len(f), f))
        self._shortest = len(self._forms[-1]) if self._forms else 0

    @property
    def empty(self) -> bool:
        return not self._forms

    def is_secret(self, text: str) -> bool:
        """Whether a text holds a secret in any form."""
        return bool(self._forms) and self.text(text) != text

    def text(self, value: str) -> str:
        if not self._forms or len(value) < self._shortest:
            return value
        return _apply(value, _spans(value, self._forms))

    def cut(self, value: str, *, start: bool = False, end: bool = False, markers: Iterable[str] = ()) -> str:
        """A text someone else cut: masked whole, plus the parts of a secret left at each cut (its
        suffix at the start when `start`, its prefix at the end when `end`, both around each marker)."""
        if not self._forms or not value:
            return value
        boundaries = []
        if start:
            boundaries.append((0, 0))
        if end:
            boundaries.append((len(value), len(value)))
        for marker in markers:
            at = value.find(marker)
            while at >= 0:
                boundaries.append((at, at + len(marker)))
                at = value.find(marker, at + len(marker))
        return _apply(value, _spans(value, self._forms) + _partial_spans(value, boundaries, self._forms))

    def head(self, value: str, limit: int, ellipsis: str = "...") -> str:
        """The first `limit` characters of the masked text (masked first, then cut)."""
        masked = self.text(value)
        return masked if len(masked) <= limit else masked[:limit] + ellipsis

    def tail(self, value: str, limit: int) -> str:
        """The last `limit` characters of the masked text (masked first, then cut)."""
        masked = self.text(value)
        return masked if len(masked) <= limit else masked[-limit:]

    def data(self, value: Any) -> Any:
        """Every string in a structure masked (keys too), a number equal to a secret replaced by the
        mask, dataclasses rebuilt with masked strings (their numbers are golive's own counts and
        timings, kept as numbers for the code that formats them)."""
        return self._data(value, numbers=True)

    def _data(self, value: Any, numbers: bool) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, (int, float)):
            return MASK if numbers and str(value) in self._texts else value
        if isinstance(value, dict):
            return {self._data(k, numbers): self._data(v, numbers) for k, v in value.items()}
        if isinstance(value, list):
            return [self._data(v, numbers) for v in value]
        if isinstance(value, tuple):
            return tuple(self._data(v, numbers) for v in value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.replace(value, **{f.name: self._data(getattr(value, f.name), False)
                                                 for f in dataclasses.fields(value) if f.init})
        return value

    def all_forms(self) -> list[str]:
        return list(self._forms)


def is_secret_path(path: str, secret_paths: Iterable[str]) -> bool:
    """Whether a variable path (`name`, `name.key`, `name[0]`) is secret or lies under one that is."""
    return any(path == p or path.startswith((p + ".", p + "[")) for p in secret_paths)


def holds_secret_path(name: str, secret_paths: Iterable[str]) -> bool:
    """Whether a variable is secret or holds a secret somewhere inside."""
    return any(p == name or p.startswith((name + ".", name + "[")) for p in secret_paths)


def mask_paths(value: Any, secret_paths: Iterable[str], path: str = "") -> Any:
    """A variable tree with every secret path (and all below it) replaced by the mask."""
    paths = secret_paths if isinstance(secret_paths, (set, frozenset)) else frozenset(secret_paths)
    if path and path in paths:
        return MASK
    if isinstance(value, dict):
        return {k: mask_paths(v, paths, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and path:
        return [mask_paths(v, paths, f"{path}[{i}]") for i, v in enumerate(value)]
    return value

