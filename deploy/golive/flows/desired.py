"""What a deploy makes live on a host: the release (its id, rendered config and metadata), decided on
the controller before any host is touched; and the controller's check of the artifact archive."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from typing import Any

from golive.agent import archive as archive_rules
from golive.core.errors import BadInput, Problem
from golive.core.model import AppDefinition, Host
from golive.core.plan import DesiredRelease
from golive.core.release import Artifact, release_id
from golive.flows import steps
from golive.workspace import Workspace


def check_artifact_archive(app: AppDefinition, artifact: Artifact, cache_dir: Path | None = None) -> None:
    """Refuse a hostile archive on the controller, before any host is touched (the host checks again).

    A pass is remembered in cache_dir under the archive's sha256 (which Workspace.artifact has just
    verified against the file), the limits and the checker's own code: a re-deploy or rollforward
    of the same artifact need not decompress it again (~30 ms for 5 MB)."""
    limits = (app.store.max_members, app.store.max_unpacked_bytes)
    passed = None
    if cache_dir is not None:
        checker = hashlib.sha256(Path(archive_rules.__file__).read_bytes()).hexdigest()[:16]
        passed = cache_dir / "archives-checked" / f"{artifact.sha256}-{limits[0]}-{limits[1]}-{checker}"
        if passed.is_file():
            return
    try:
        with tarfile.open(artifact.path, "r:*") as archive:
            archive_rules.check_archive(archive.getmembers(), *limits)
    except archive_rules.ArchiveRefused as error:
        raise BadInput(Problem(artifact.name, f"refused, nothing was sent to any host: {error}")) from None
    except (tarfile.TarError, OSError, EOFError) as error:
        reason = str(error).splitlines()[0].rstrip(":")  # tarfile lists every method it tried, one a line
        raise BadInput(Problem(artifact.name, f"not a readable tar archive ({reason}); nothing was sent to any "
                                              f"host")) from None
    if passed is not None:
        try:
            passed.parent.mkdir(parents=True, exist_ok=True)
            passed.touch()
        except OSError:
            pass  # a read-only workspace checks every time


def rendered_meta(ws: Workspace, host: Host, version: str, desired: DesiredRelease) -> dict[str, Any]:
    app = ws.app

    def render(text: str, what: str) -> str:
        return ws.render_string(text, host, version, what)

    service = {k: render(getattr(app.service, k), f"service.{k}")
               for k in ("start", "stop", "restart", "status", "systemd_unit")}
    health = {"url": render(app.health.url, "health.url"), "command": render(app.health.command, "health.command"),
              "expect": list(app.health.expect), "timeout": app.health.timeout, "retries": app.health.retries,
              "interval": app.health.interval}
    hooks = {k: render(getattr(app.hooks, k), f"hooks.{k}") for k in ("before_cutover", "after_cutover", "on_rollback")}
    return steps.release_meta(app, desired, service, health, hooks)


def desired_release(ws: Workspace, host: Host, artifact: Artifact) -> tuple[DesiredRelease, dict[str, Any]]:
    config = ws.render(host, artifact.version)
    desired = DesiredRelease(release_id(artifact.version, config.hash), artifact.version, artifact.name,
                             artifact.sha256, config)
    return desired, rendered_meta(ws, host, artifact.version, desired)


