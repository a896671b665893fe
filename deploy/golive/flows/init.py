"""golive init [DIR] [--name PRODUCT]: a working workspace for a new product.

The workspace is golive's skeleton (deploy/golive/skeleton/, package data) with the product's name
filled in: golive.yml with every setting commented, one example customer with a staging and a
production group, one config template, golive's generic checks, ansible.cfg, a README and a random
vault password (0600, git-ignored). golive's own Ansible playbooks and role, and the checks' pytest
plugin, come with the package: nothing of golive's is copied in but what the user is meant to edit.
Nothing existing is overwritten: a file in the way refuses the whole run before anything is written.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from golive.core.errors import BadInput, Problem
from golive.core.outcome import Outcome

SKELETON = Path(__file__).resolve().parents[1] / "skeleton"
PRODUCT = "__PRODUCT__"
# .py files travel as .tmpl (the package carries no check files as modules of its own)
TEMPLATE_SUFFIX = ".tmpl"
RENAMED = {"gitignore": ".gitignore"}
VAULT_PASSWORD = "vault-password"
STORE = Path("build") / "releases"
# The product name becomes paths (/opt/<name>, config_templates/<name>/) and artifact names.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def skeleton_files() -> dict[Path, Path]:
    """Workspace path (with the name placeholder) -> skeleton file, links followed."""
    found = {}
    for directory, _, names in os.walk(SKELETON, followlinks=True):
        for name in names:
            source = Path(directory) / name
            relative = source.relative_to(SKELETON)
            if "__pycache__" in relative.parts:
                continue
            target = relative.with_name(RENAMED.get(relative.name, relative.name.removesuffix(TEMPLATE_SUFFIX)))
            found[target] = source
    return dict(sorted(found.items()))


def product_name(directory: Path, name: str | None) -> str:
    chosen = name if name is not None else directory.name.lower().replace(" ", "-").replace(".", "-")
    if not NAME_PATTERN.match(chosen):
        where = "--name" if name is not None else f"the folder name {directory.name!r} (pass --name)"
        raise BadInput(f"{where}: a product name is lower-case letters, digits, '-' and '_', starting with a "
                       f"letter or digit (it names /opt/<name> and the artifacts), got {chosen!r}")
    return chosen


def init(directory: str, *, name: str | None = None) -> Outcome:
    root = Path(directory).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise BadInput(f"{root} exists and is not a folder")
    product = product_name(root, name)
    files = {Path(str(target).replace(PRODUCT, product)): source for target, source in skeleton_files().items()}
    if not files:
        raise BadInput(f"golive's workspace skeleton is missing from {SKELETON} (reinstall golive)")
    planned = [*files, Path(VAULT_PASSWORD)]
    in_the_way = [str(p) for p in planned if (root / p).exists() or (root / p).is_symlink()]
    if in_the_way:
        raise BadInput([Problem(str(root / p), "exists already; golive init writes nothing over it (nothing was "
                                               "written: init a new folder, or move it away)") for p in in_the_way])
    try:
        for target, source in files.items():
            path = root / target
            path.parent.mkdir(parents=True, exist_ok=True)
            data = source.read_bytes().replace(PRODUCT.encode(), product.encode())
            path.write_bytes(data)
            path.chmod(0o644)
        password = root / VAULT_PASSWORD
        fd = os.open(password, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        (root / STORE).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadInput(f"{getattr(error, 'filename', None) or root}: {error.strerror or error}") from None
    lines = [f"golive init: a workspace for {product} in {root}",
             *(f"  {p}" for p in sorted(map(str, planned))),
             f"  {STORE}/ (empty: the release store)",
             f"WARNING: {VAULT_PASSWORD} holds a random Ansible Vault password made for this workspace: whoever "
             f"has it reads every secret you encrypt with it. Never commit it (.gitignore leaves it out); share "
             f"it through your password manager.",
             "Next: edit golive.yml and inventories/example/ for your product and hosts, then "
             f"`golive validate --workspace {root}` (walkthrough: docs/your-own-application.md)."]
    return Outcome({"workspace": str(root), "product": product, "files": sorted(map(str, planned)),
                    "store": str(STORE)}, "\n".join(lines))
