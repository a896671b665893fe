"""Every config file the application reads is exactly what golive renders now, published by a link
into the live release, with the mode and owner golive gives it."""

from golive.core.redact import MASK


def test_config_files_are_what_golive_renders(host, golive):
    paths = [f.path for f in golive.files]
    result = host.run("sha256sum " + " ".join(["%s"] * len(paths)), *paths)
    found = dict(reversed(line.split(None, 1)) for line in result.stdout.splitlines() if line.strip())
    different = []
    for f in golive.files:
        if found.get(f.path) != f.sha256:
            # A secret file is compared by hash and never shown, not even its hash.
            shown = MASK if f.secret else f"{str(found.get(f.path, 'missing'))[:16]}, want {f.sha256[:16]}"
            different.append(f"{f.path} ({shown})")
    assert not different, "differs from what golive renders: " + "; ".join(different)


def test_config_files_are_links_into_the_live_release(host, golive):
    paths = [f.path for f in golive.files]
    # one line per existing path: "path|link target" (the target is empty for a regular file)
    listing = host.run("find " + " ".join(["%s"] * len(paths)) + " -maxdepth 0 -printf '%%p|%%l\\n'", *paths)
    targets = dict(line.split("|", 1) for line in listing.stdout.splitlines() if "|" in line)
    wrong = [f"{f.path} -> {targets.get(f.path) or ('a regular file' if f.path in targets else 'missing')}"
             for f in golive.files if targets.get(f.path) != f"{golive.root}/current/config/{f.dest}"]
    assert not wrong, "not linked into the live release (switching releases would not switch them): " + \
        "; ".join(wrong)


def test_config_files_have_their_modes_and_owner(host, golive):
    paths = [f.path for f in golive.files]
    lines = host.check_output("stat -L -c '%%n|%%a|%%U' " + " ".join(["%s"] * len(paths)), *paths).splitlines()
    found = {path: (int(mode, 8), owner) for path, mode, owner in (line.split("|") for line in lines)}
    wrong = [f"{f.path}: mode {found[f.path][0]:04o} owner {found[f.path][1]}, want {f.mode:04o} {golive.owner}"
             for f in golive.files if found.get(f.path) != (f.mode, golive.owner)]
    assert not wrong, "; ".join(wrong)
