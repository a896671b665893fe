"""golive package DIR --version V: the release artifact of a directory, with its manifest and .sha256
(golive.adapters.package makes the bytes)."""

from __future__ import annotations

import os
from pathlib import Path

from golive.adapters.package import package as make_package
from golive.core.errors import BadInput, Problem
from golive.core.model import name_problem
from golive.core.outcome import Outcome
from golive.core.release import VERSION_PATTERN
from golive.core.requires import parse_option
from golive.workspace import Workspace


def package(source: str, version: str, *, name: str | None = None, out: str | None = None,
            ws: Workspace | None = None, requires: list[str] | None = None) -> Outcome:
    """The product name and the store default to the workspace's golive.yml (application.name,
    release_store.path); the file is named by its release_store.artifact pattern. `requires`: the
    --requires values ("python>=3.11", "glibc>=2.28", "arch=x86_64,aarch64"), written into the
    manifest (docs/artifacts.md)."""
    if not VERSION_PATTERN.fullmatch(version):
        raise BadInput(Problem("--version", f"{version!r} is not a valid version (letters, digits, . _ + -, "
                                            f"at most 64, starting with a letter or digit)"))
    requirements, problems = parse_option(requires or [])
    if problems:
        raise BadInput(problems)
    if ws is not None:
        product, store = name or ws.app.name, Path(out).resolve() if out else ws.store
    elif name and out:
        product, store = name, Path(out).resolve()
    else:
        raise BadInput("package: no golive.yml in the workspace to take the product name and store from; "
                       "give --name and --out, or --workspace")
    problem = name_problem(product, "product")
    if problem:
        raise BadInput(Problem("--name" if name else "golive.yml application.name", problem))
    if ws is not None:
        file_name = ws.app.store.artifact_name(product, version)
        limits = (ws.app.store.max_members, ws.app.store.max_unpacked_bytes)
    else:
        file_name, limits = f"{product}-{version}.tar.gz", (20000, 1 << 30)
    made = make_package(Path(source), version, product, store, file_name, limits,
                        requires=requirements.declared() or None)
    shown = os.path.relpath(made.path) if made.path.is_relative_to(Path.cwd()) else str(made.path)
    needs = f"\nrequires: {'; '.join(map(str, requirements.items))}" if requirements else ""
    return Outcome({"artifact": str(made.path), "sha256": made.sha256, "members": made.members,
                    "name": product, "version": version, "requires": requirements.declared()},
                   f"artifact: {shown}\nsha256: {made.sha256}\nmembers: {made.members} (manifest included){needs}")
