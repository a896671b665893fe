"""The host runs the release golive says it should, and its history agrees."""

import json


def test_live_release_is_the_desired_one(golive):
    assert golive.current == golive.release, (
        f"`current` points to {golive.current}, but the workspace makes {golive.release} live for "
        f"{golive.version} (a different release, or config rendered differently now)")


def test_ledger_says_the_live_release_is_live(golive):
    assert golive.ledger_release == golive.current, (
        f"the ledger's last deploy/rollback made {golive.ledger_release} live, but `current` points to "
        f"{golive.current}: it was switched outside golive")


def test_live_release_passed_its_health_check(host, golive):
    # The same command on every host (golive check runs such commands on the whole fleet at once).
    meta = json.loads(host.check_output('cat %s/.golive/releases/"$(basename "$(readlink %s/current)")".json',
                                        golive.root, golive.root) or "{}")
    assert meta.get("id") == golive.current, f"no metadata for the live release {golive.current}"
    assert meta.get("state") == "good", f"release {golive.current} is {meta.get('state')!r}, not verified good"


def test_live_release_holds_exactly_what_was_shipped(host, golive):
    # Every entry of the release directory - the artifact's files as golive unpacks them, the rendered
    # config, the shared links, the directory itself - by content, mode, owner and group, as drift
    # compares it; golive.yml's drift.ignore names what is left alone.
    different = golive.release_differences(host)
    assert not different, (
        f"release {golive.current} is not what was shipped (a deploy of {golive.version} puts it back): "
        + "; ".join(different[:20]) + (f"; and {len(different) - 20} more" if len(different) > 20 else ""))
