"""The round-trip floor: `ssh host true` to every host at once with OpenSSH, host keys verified.

    python -m golive.bench.sshtrue KEY KNOWN_HOSTS ADDRESS...
"""

from __future__ import annotations

import subprocess
import sys


def main(argv: list[str]) -> int:
    key, known_hosts, *addresses = argv
    processes = [subprocess.Popen(["ssh", "-i", key, "-o", f"UserKnownHostsFile={known_hosts}",
                                   "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                                   "-o", "ControlMaster=no", f"root@{address}", "true"])
                 for address in addresses]
    return max(p.wait() for p in processes)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
