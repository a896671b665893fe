"""A release directory as the role's state task reads it (tasks/state.yml: `find -printf` lines of a
tag, and sha256sum's digests by path), turned into the entries golive.agent.shared.scan_release
lists for the host agent: path -> {type, mode, uid, gid, size, sha256 | link}. One function for the
live release ('tree' lines) and for the kept release a switch goes to ('kept' lines).

The filter runs on the controller, in the Python that runs ansible-playbook.
"""

from __future__ import annotations

import re

KINDS = {"f": "file", "d": "dir", "l": "link"}


def golive_release_tree(lines, tag, hashes, ignore_regex="(?!)"):
    """`lines`: the state task's output; `tag`: which release's lines ("tree", "kept"), each
    "<tag>\\t%y\\t%m\\t%U\\t%G\\t%s\\t%l\\t%p" as find printed it; `hashes`: sha256 by path; what
    `ignore_regex` (golive.yml's drift.ignore) matches is left out."""
    ignored = re.compile(ignore_regex)
    tree = {}
    for line in lines:
        if not line.startswith(tag + "\t"):
            continue
        fields = line.split("\t", 7)
        path = "." if fields[7] == "." else fields[7][2:]
        kind = KINDS.get(fields[1], "other")
        entry = {"type": kind, "uid": int(fields[3]), "gid": int(fields[4])}
        if kind == "link":
            entry["link"] = fields[6]
        else:
            entry["mode"] = f"{int(fields[2], 8):04o}"
        if kind == "file":
            entry.update(size=int(fields[5]), sha256=hashes.get(path, ""))
        if not ignored.match(path):
            tree[path] = entry
    return tree


class FilterModule:
    def filters(self):
        return {"golive_release_tree": golive_release_tree}
