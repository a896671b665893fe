"""The secrets corpus: one list of secrets, one list of the forms other code may give a value, one of
the places a secret is planted. tests/hostile/test_secrets_corpus.py plants every secret in a
workspace at once and greps every output and file for every form of every one of them; the same list
drives the unit tests of golive's Redactor and of the host agent's Masker.

A new case is one line: a Secret below (its variable, value and where it comes from).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import shlex
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

# Where a secret comes from: an inline `!vault` value, a variable of a whole vault-encrypted vars
# file, or a plain variable golive.yml marks `secret: true`.
INLINE, VAULT_FILE, SCHEMA = "inline vault value", "vault-encrypted vars file", "secret: true variable"


@dataclass(frozen=True)
class Secret:
    name: str  # the inventory variable that holds it (group_vars/all of the manufacturer)
    value: Any
    source: str
    # False: golive masks it only where it knows the variable (a boolean, or text shorter than the
    # 4-character floor): the corpus then checks those places, never free text for the value
    as_text: bool = True
    # True: a word golive uses itself (a state "unverified", the Ansible role's task names): masked
    # wherever golive prints text, but the files it writes and Ansible's own output hold it anyway
    word: bool = False


LONG = "Lg-" + "".join(f"{i:04d}-Abc&<>|" for i in range(250))  # 3253 characters, longer than every cut

SECRETS: tuple[Secret, ...] = (
    Secret("corpus_html", "Stg&Pw<2026>\"q'|rt", INLINE),
    Secret("corpus_markdown", "Md|*bold*_[link](x)#`code`!", INLINE),
    Secret("corpus_shell", "Sh$(echo pwned);&|><`id`!*~", VAULT_FILE),
    Secret("corpus_regex", "Rx.*+?^${1,3}[a-z]\\|(x)", SCHEMA),
    Secret("corpus_backslash", "Bs\\Temp\\new\\\\x41\\", INLINE),
    Secret("corpus_quotes", "Qu'single'\"double\"", VAULT_FILE),
    Secret("corpus_newline", "Nl-first-line\nNl-second-line", INLINE),
    Secret("corpus_tab", "Tb\tcol-two\tcol-three", SCHEMA),
    Secret("corpus_unicode", "Uni-Straße-密码-🔐-Ende", INLINE),
    Secret("corpus_long", LONG, VAULT_FILE),
    Secret("corpus_int", 48213377, VAULT_FILE),
    Secret("corpus_float", 2718.2818, VAULT_FILE),
    Secret("corpus_bool_looking", "TRUE", INLINE),
    Secret("corpus_bool", True, VAULT_FILE, as_text=False),
    Secret("corpus_short", "Q7x", SCHEMA, as_text=False),
    Secret("corpus_nested", {"user": "Nest-User-9x", "pins": [90210111, "Nest-List-7y"], "on": False}, VAULT_FILE),
    Secret("corpus_word", "verified", INLINE, word=True),  # a word golive prints ("verified")
    Secret("corpus_substring", "Huaxin", SCHEMA),  # inside the company name, which is not secret
)

# The secrets of the corpus put into service commands, a hook and a health URL (golive.yml).
IN_COMMAND = "corpus_shell"  # the restart command sets it in an environment variable (quoted)
IN_URL = "corpus_unicode"  # the health URL carries it URL-encoded (the check then fails)


def texts(value: Any) -> list[str]:
    """The texts a secret value shows as (its leaves; as golive.core.redact.leaf_texts)."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, dict):
        return [t for v in value.values() for t in texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    return [str(value)]


# What other code may turn a secret into before golive sees it, or after golive let it through.
FORMS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "HTML-escaped": html.escape,
    "HTML-escaped, quotes kept": lambda s: html.escape(s, quote=False),
    "XML-escaped": xml_escape,
    "XML attribute": lambda s: quoteattr(s)[1:-1],
    "JSON-escaped": lambda s: json.dumps(s)[1:-1],
    "JSON-escaped, UTF-8": lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    "repr": lambda s: repr(s)[1:-1],
    "shell-quoted": shlex.quote,
    "URL-encoded": lambda s: urllib.parse.quote(s, safe=""),
    "URL-encoded, / kept": urllib.parse.quote,
    "form-encoded": urllib.parse.quote_plus,
    "Markdown-escaped": lambda s: s.replace("|", "\\|"),
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
    "sha256": lambda s: hashlib.sha256(s.encode()).hexdigest(),
}
# Forms golive itself never produces and so does not look for: grepped in outputs, not masked in
# text golive is handed (base64 of a value alone appears nowhere golive writes).
NOT_MASKED_IN_TEXT = {"base64"}


def forms_of(text: str) -> dict[str, str]:
    found = {name: form(text) for name, form in FORMS.items()}
    if "\n" in text:  # a diff or an indented listing shows a multi-line secret a line at a time
        found.update({f"line {n}": line.strip() for n, line in enumerate(text.splitlines(), 1)})
    return found


def findings(output: str, secrets: tuple[Secret, ...] = SECRETS, *, words: bool = True) -> list[str]:
    """Every secret of the corpus (in any of its forms) that `output` holds, as 'name (form)';
    `words=False` leaves out the secrets that are words golive itself uses."""
    found = []
    for secret in secrets:
        if not secret.as_text or (secret.word and not words):
            continue
        for text in texts(secret.value):
            for form, shown in forms_of(text).items():
                if len(shown) >= 4 and shown in output:
                    found.append(f"{secret.name} ({form}: {shown[:40]!r})")
            # what a cut may leave of a long secret: any PIECE characters of it, raw or JSON-escaped
            for escaped, piece in ((e, p) for e in (False, True) for p in pieces(text)):
                if (json.dumps(piece)[1:-1] if escaped else piece) in output:
                    found.append(f"{secret.name} (a part of it: {piece!r})")
                    break
    return found


PIECE = 24


def pieces(text: str) -> list[str]:
    """Every PIECE-character stretch of a secret much longer than that (for a shorter one, only
    the whole counts)."""
    return [text[i:i + PIECE] for i in range(len(text) - PIECE + 1)] if len(text) >= 2 * PIECE else []
