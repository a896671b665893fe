"""What a deploy makes live on a host: the release (its id, rendered config and metadata), decided on
the controller before any host is touched; and the controller's check of the artifact archive."""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from golive.agent import archive as archive_rules
from golive.core.errors import BadInput, Problem
from golive.core.model import AppDefinition, Host
from golive.core.plan import DesiredRelease
from golive.core.release import Artifact, RenderedConfig, release_id, run_settings_hash
from golive.core.requires import Requirements, parse_requires
from golive.flows import steps
from golive.workspace import Workspace


def check_artifact_archive(app: AppDefinition, artifact: Artifact, cache_dir: Path | None = None) -> Requirements:
    """Refuse a hostile, cut-short or incomplete archive on the controller, before any host is touched
    (the host checks again): the declared format, the end of the archive, every member's safety, and
    the release manifest (every member listed, every listed member present with its hash).
    Returns what the artifact requires of a host (the manifest's `requires`, validated: a malformed
    declaration is bad input naming the artifact and the key).

    A pass is remembered in cache_dir under the archive's sha256 (which Workspace.artifact has just
    verified against the file), the limits and the checker's own code: a re-deploy or rollforward
    of the same artifact need not decompress it again (~30 ms for 5 MB); the pass holds the
    manifest's `requires` as it was declared."""
    limits = (app.store.max_members, app.store.max_unpacked_bytes)
    passed = None
    if cache_dir is not None:
        checker = hashlib.sha256(Path(archive_rules.__file__).read_bytes()).hexdigest()[:16]
        # The manifest must name this product and version: both are part of what passed.
        # "r1": a pass holds the declared requirements (an earlier golive's pass is empty)
        passed = (cache_dir / "archives-checked"
                  / f"{artifact.sha256}-{limits[0]}-{limits[1]}-{checker}-{app.name}-{artifact.version}-r1")
        try:
            return artifact_requirements(artifact, json.loads(passed.read_text()).get("requires"))
        except (OSError, ValueError, AttributeError):
            pass
    try:
        with archive_rules.open_declared(artifact.path, artifact.name) as archive:
            checked = archive_rules.check_archive(archive.getmembers(), *limits)
            archive_rules.check_complete(archive)
            manifest = archive_rules.manifest_bytes(archive, checked)
            entries = archive_rules.parse_manifest(manifest, app.name, artifact.version)
            archive_rules.compare_manifest(entries, checked)
            archive_rules.hash_members(archive, checked, entries)
    except archive_rules.ArchiveRefused as error:
        raise BadInput(Problem(artifact.name, f"refused, nothing was sent to any host: {error}")) from None
    except (tarfile.TarError, OSError, EOFError) as error:
        reason = str(error).splitlines()[0].rstrip(":")  # tarfile lists every method it tried, one a line
        raise BadInput(Problem(artifact.name, f"not a readable tar archive ({reason}); nothing was sent to any "
                                              f"host")) from None
    declared = json.loads(manifest.decode("utf-8")).get("requires")  # parse_manifest read it as JSON
    requirements = artifact_requirements(artifact, declared)
    if passed is not None:
        try:
            passed.parent.mkdir(parents=True, exist_ok=True)
            passed.write_text(json.dumps({"requires": declared}))
        except OSError:
            pass  # a read-only workspace checks every time
    return requirements


def artifact_requirements(artifact: Artifact, declared: object) -> Requirements:
    """The manifest's `requires`, or bad input naming the artifact and each malformed key (no host
    has been touched: the archive is checked before any connection)."""
    requirements, problems = parse_requires(declared, f"{artifact.name}: {archive_rules.MANIFEST} requires")
    if problems:
        raise BadInput([*problems, Problem(artifact.name, "refused, nothing was sent to any host: what it "
                                                          "requires of a host is malformed (docs/artifacts.md)")])
    return requirements


def rendered_commands(ws: Workspace, host: Host, version: str) -> tuple[dict[str, str], dict[str, Any],
                                                                         dict[str, str]]:
    """The host's service commands, health check and hooks, rendered with its variables."""
    app = ws.app

    def render(text: str, what: str) -> str:
        return ws.render_string(text, host, version, what)

    service = {k: render(getattr(app.service, k), f"service.{k}")
               for k in ("start", "stop", "restart", "status", "systemd_unit")}
    health = {"url": render(app.health.url, "health.url"), "command": render(app.health.command, "health.command"),
              "expect": list(app.health.expect), "timeout": app.health.timeout, "retries": app.health.retries,
              "interval": app.health.interval}
    hooks = {k: render(getattr(app.hooks, k), f"hooks.{k}") for k in ("before_cutover", "after_cutover", "on_rollback")}
    return service, health, hooks


def host_release_id(ws: Workspace, host: Host, version: str, config: RenderedConfig | None = None) -> str:
    """The id of the release a host runs for a version: its rendered config and its rendered service,
    health and hook settings (golive.core.release.release_id), what every flow names a release by.
    `config` is the host's rendered config, rendered here when not given."""
    config = config if config is not None else ws.render(host, version)
    return release_id(version, config.hash, run_settings_hash(*rendered_commands(ws, host, version)))


def rendered_run(ws: Workspace, host: Host, version: str, desired: DesiredRelease) -> dict[str, Any]:
    """The release's run file: its service commands, health check and hooks rendered with the host's
    variables (0600 on the host; the metadata holds none of it)."""
    return steps.release_run(desired, *rendered_commands(ws, host, version))


def desired_release(ws: Workspace, host: Host, artifact: Artifact
                    ) -> tuple[DesiredRelease, dict[str, Any], dict[str, Any]]:
    """(the release, its metadata, its run file) for a host."""
    config = ws.render(host, artifact.version)
    commands = rendered_commands(ws, host, artifact.version)
    desired = DesiredRelease(release_id(artifact.version, config.hash, run_settings_hash(*commands)),
                             artifact.version, artifact.name, artifact.sha256, config,
                             ws.release_tree(artifact.version, config, artifact).entries, ws.app.drift_ignore)
    return desired, steps.release_meta(ws.app, desired), steps.release_run(desired, *commands)


def requirement_problems(requirements: Requirements, artifact: Artifact,
                         platforms: Mapping[str, Mapping[str, Any]], closing: str) -> list[Problem]:
    """Every host's unmet requirements, each naming the host, the requirement and what the host
    has (`platforms`: each host's facts as the agent's state step reads them); then `closing`, what
    the refusal means for the run. [] when every host meets them."""
    problems = [Problem(host, unmet.sentence(artifact.name))
                for host, facts in platforms.items() for unmet in requirements.unmet(facts)]
    return problems + [Problem(artifact.name, closing)] if problems else []
