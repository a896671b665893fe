"""What a person sees: colour by severity where a terminal shows it (rich decides), never in a pipe or
a file, not with NO_COLOR or --json; text masked before it is styled and never read as rich markup;
`-v` lists each host's steps with their seconds.

The summaries are the real ones (golive.flows.deploy.deploy_outcome over HostReports); the terminal is
a rich Console forced to one, with the 8 standard colours, so each severity's ANSI code is known."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from golive.adapters.progress import Progress, colour_console, say, show_outcome
from golive.core.outcome import Outcome, line_severities, step_detail
from golive.core.redact import MASK, Redactor
from golive.flows.deploy import deploy_outcome
from golive.flows.session import HostReport
from tests.conftest import REPO, WAIT_BOUND_SECONDS, run_golive

RED, GREEN, YELLOW = "\x1b[31m", "\x1b[32m", "\x1b[33m"
BOLD_RED, BOLD_YELLOW = "\x1b[1;31m", "\x1b[1;33m"
ESC = "\x1b"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

STEPS = {"lock": 0.012, "upload": 0.2, "unpack": 0.031, "configure": 0.004, "cutover": 0.001, "restart": 0.35,
         "verify": 0.42}


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch):
    """The runner's own terminal settings never decide a test: each sets what it means."""
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm")


def terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, color_system="standard", width=300)


def written(console: Console) -> str:
    return console.file.getvalue()  # type: ignore[attr-defined]


def report(host: str, status: str, **extra) -> HostReport:
    base = {"environment": "production", "action": "upgrade", "from_release": "1.0-aaaa", "to_release": "1.1-bbbb",
            "live_release": "1.1-bbbb", "steps": dict(STEPS)}
    return HostReport(host=host, status=status, **{**base, **extra})  # type: ignore[arg-type]


def outcome_of(*reports: HostReport, verb: str = "deploy") -> Outcome:
    targets = [SimpleNamespace(host=SimpleNamespace(name=r.host), report=r, takeover=None) for r in reports]
    return deploy_outcome(verb, "acme", "production", "1.1", targets, {})  # type: ignore[arg-type]


EVERY_END = (  # (report, the colour of its summary line)
    (report("web1", "deployed"), GREEN),
    (report("web2", "unchanged", action=None), GREEN),
    (report("web3", "rolled_back", live_release="1.0-aaaa", error="verify: /health answered 503"), YELLOW),
    (report("web4", "skipped", steps={}, error="--max-fail 20% crossed by earlier batches"), YELLOW),
    (report("web5", "failed", live_release="1.0-aaaa", error="restart: exit 1"), RED),
    (report("web6", "unreachable", steps={}, error="cannot connect: refused"), RED),
    (report("web7", "locked", steps={}, error="locked by ci@build (pid 42)"), RED),
    (report("web8", "unknown", error="connection lost; the host finishes on its own"), RED),
)


def lines_of(text: str) -> dict[str, str]:
    """Each host's first line (its summary), by host."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^(?:\x1b\[[0-9;]*m)?  (web\d+):", line)
        if match:
            found.setdefault(match.group(1), line)
    return found


# -- colour by severity -------------------------------------------------------------------------

def test_each_hosts_summary_line_is_coloured_by_where_it_ended_up():
    console = terminal()
    show_outcome(outcome_of(*(r for r, _ in EVERY_END)), Redactor(), console=console)
    out = written(console)
    summaries = lines_of(out)
    for r, colour in EVERY_END:
        assert summaries[r.host].startswith(colour + f"  {r.host}:"), (r.status, summaries[r.host])
        assert summaries[r.host].endswith("\x1b[0m"), summaries[r.host]
    headline, *_, last = out.splitlines()
    assert headline.startswith(RED + "deploy 1.1 to acme/production: 2 of 8 host(s) ok"), headline
    assert ESC not in last, "the closing note has no severity of its own"
    # the colour is all that was added: without it, the text is the summary as it always was
    assert ANSI.sub("", out) == outcome_of(*(r for r, _ in EVERY_END)).text + "\n"


def test_a_run_where_every_host_is_ok_has_a_green_headline():
    console = terminal()
    show_outcome(outcome_of(report("web1", "deployed"), report("web2", "deployed"), verb="rollback"), Redactor(),
                 console=console)
    headline = written(console).splitlines()[0]
    assert headline.startswith(GREEN + "rollback 1.1 to acme/production: 2 of 2 host(s) ok"), headline


@pytest.mark.parametrize(("kind", "colour"), [("error", BOLD_RED), ("failed", BOLD_RED),
                                              ("internal error", BOLD_RED), ("warning", BOLD_YELLOW)])
def test_a_messages_prefix_is_coloured_by_its_severity_and_only_the_prefix(kind, colour):
    console = terminal()
    say(Redactor(), kind, "inventories/acme/hosts.yml:3: something to say", console=console)
    assert written(console) == f"{colour}golive: {kind}:\x1b[0m inventories/acme/hosts.yml:3: something to say\n"


def test_line_severities_match_a_host_by_its_whole_name_and_only_its_first_line():
    lines = ["deploy 1 to a/b: 1 of 2 host(s) ok", "  web1: ok", "  web10: FAILED", "  web1: took over a lock",
             "    web10: a detail"]
    assert line_severities(lines, {"web1": "deployed", "web10": "failed"}, ok=False) == \
        ["error", "ok", "error", None, None]
    assert line_severities(lines, {}, ok=None) == [None] * 5


def test_a_planned_host_and_a_verb_without_hosts_have_no_colour():
    console = terminal()
    show_outcome(Outcome({"hosts": [{"host": "web1", "status": "planned"}]}, "plan:\n  web1: INSTALL -> 1.1"),
                 Redactor(), console=console)
    show_outcome(Outcome({"customer": "acme"}, "customer  environment\nacme      production"), Redactor(),
                 console=console)
    assert ESC not in written(console)


# -- where colour never goes --------------------------------------------------------------------

def test_no_color_set_to_anything_disables_colour(monkeypatch):
    outcome = outcome_of(*(r for r, _ in EVERY_END))
    monkeypatch.setenv("NO_COLOR", "1")
    console = terminal()
    show_outcome(outcome, Redactor(), console=console)
    say(Redactor(), "error", "bad", console=console)
    assert written(console) == outcome.text + "\ngolive: error: bad\n"


def test_an_empty_no_color_is_unset_as_no_color_org_says(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "")
    console = terminal()
    say(Redactor(), "warning", "careful", console=console)
    assert written(console).startswith(BOLD_YELLOW)


def test_json_mode_never_colours_even_on_a_terminal():
    console = terminal()
    show_outcome(outcome_of(report("web1", "failed", error="x")), Redactor(), console=console, colour=False)
    say(Redactor(), "warning", "careful", console=console, colour=False)
    assert ESC not in written(console)


def pipe_output(write) -> str:
    """What `write(stream)` puts through a real pipe."""
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as stream:
        write(stream)
    with os.fdopen(read_end) as reader:
        return reader.read()


def test_a_pipe_gets_the_plain_text_byte_for_byte():
    outcome = outcome_of(*(r for r, _ in EVERY_END))
    assert pipe_output(lambda stream: show_outcome(outcome, Redactor(), stream=stream, verbose=1)) == \
        outcome.text + "\n" + "\n".join(text for text, _ in step_detail(outcome.data)) + "\n"
    assert pipe_output(lambda stream: print(colour_console(stream), file=stream)) == "None\n"


def test_rich_decides_on_a_pipe_with_force_color_term_dumb_and_tty_compatible(monkeypatch, tmp_path):
    with (tmp_path / "out.txt").open("w") as a_file:
        assert colour_console(a_file) is None
        monkeypatch.setenv("FORCE_COLOR", "1")
        assert colour_console(a_file) is not None  # force-color.org: asked for, even into a file
        monkeypatch.setenv("TERM", "dumb")
        assert colour_console(a_file) is None
        monkeypatch.setenv("TERM", "xterm")
        monkeypatch.setenv("TTY_COMPATIBLE", "0")
        assert colour_console(a_file) is None
        monkeypatch.delenv("FORCE_COLOR")
        monkeypatch.setenv("TTY_COMPATIBLE", "1")
        assert colour_console(a_file) is not None
        monkeypatch.setenv("NO_COLOR", "1")
        assert colour_console(a_file) is None


# -- user text is text: masked first, never markup ------------------------------------------------

MARKUP = "[red]x[/red] [bold]y[/bold] [link=http://evil]z[/link] :smile: \\[escaped]"


def test_markup_in_a_message_prints_literally():
    console = terminal()
    say(Redactor(), "error", MARKUP, console=console)
    assert ANSI.sub("", written(console)) == f"golive: error: {MARKUP}\n"
    assert written(console).count(ESC) == 2, "the prefix's colour and its reset, nothing from the message"


def test_markup_in_a_host_name_and_an_error_prints_literally():
    console = terminal()
    outcome = outcome_of(report("[bold]web1", "failed", error=MARKUP))
    show_outcome(outcome, Redactor(), console=console, verbose=1)
    plain = ANSI.sub("", written(console))
    assert plain == outcome.text + "\n" + "\n".join(text for text, _ in step_detail(outcome.data)) + "\n"
    assert f"  [bold]web1: FAILED: {MARKUP}" in plain
    assert RED + "  [bold]web1:" in written(console)


def test_markup_in_the_live_table_prints_literally_and_cells_are_coloured():
    progress = Progress(Redactor(), quiet=True)
    progress.start("deploy [red]1.1[/red]", ["[bold]web1", "web2"], ["upload", "verify", "result"])
    progress.update("[bold]web1", "upload", "ok", "0.20s")
    progress.update("[bold]web1", "verify", "failed", "0.42s")
    progress.update("[bold]web1", "result", "rolled_back")
    progress.update("web2", "upload", "running")
    console = terminal()
    console.print(progress._table())
    out = written(console)
    plain = ANSI.sub("", out)
    assert "deploy [red]1.1[/red]" in plain and "[bold]web1" in plain
    assert GREEN + "ok 0.20s" in out and RED + "FAILED 0.42s" in out and YELLOW + "undone" in out
    assert re.search(r"│ \.\. +│", out), "a running step has no colour"


def test_secrets_are_masked_before_anything_is_styled():
    secret = "[bold]hunter2-secret[/bold]"
    redactor = Redactor([secret])
    console = terminal()
    say(redactor, "failed", f"hook printed {secret}", console=console)
    show_outcome(outcome_of(report("web1", "failed", error=f"before_cutover: {secret}")), redactor,
                 console=console, verbose=1)
    out = written(console)
    assert "hunter2" not in out and out.count(MASK) == 3, out
    assert f"golive: failed:\x1b[0m hook printed {MASK}" in out


# -- -v: each host's steps and their seconds ------------------------------------------------------

def test_verbose_lists_each_hosts_steps_with_seconds_and_the_error_of_a_failed_host():
    outcome = outcome_of(report("web1", "deployed"), report("web2", "rolled_back", error="verify: 503"),
                         report("web3", "unreachable", steps={}, error="cannot connect"))
    console = terminal()
    show_outcome(outcome, Redactor(), console=console, verbose=1)
    out = written(console)
    detail = ANSI.sub("", out).split(outcome.text + "\n", 1)[1]
    each = "lock 0.01s · upload 0.20s · unpack 0.03s · configure 0.00s · cutover 0.00s · restart 0.35s · verify 0.42s"
    assert detail == ("steps on each host (seconds):\n"
                      f"  web1 (deployed): {each}\n"
                      f"  web2 (rolled_back): {each}\n"
                      "    error: verify: 503\n"
                      "  web3 (unreachable): no step ran on the host\n"
                      "    error: cannot connect\n")
    assert GREEN + "  web1 (deployed)" in out and YELLOW + "  web2 (rolled_back)" in out
    assert RED + "  web3 (unreachable)" in out


def test_without_verbose_there_is_no_step_detail_and_vv_shows_the_same_as_v():
    outcome = outcome_of(report("web1", "deployed"))
    shown = {}
    for verbose in (0, 1, 2):
        console = terminal()
        show_outcome(outcome, Redactor(), console=console, verbose=verbose)
        shown[verbose] = ANSI.sub("", written(console))
    assert shown[0] == outcome.text + "\n"
    assert shown[1] == shown[2] != shown[0]


def test_verbose_adds_nothing_to_a_verb_without_host_steps():
    assert step_detail({"hosts": [{"host": "web1", "result": "passed"}]}) == []  # check
    assert step_detail({"hosts": 3}) == [] and step_detail({}) == []


# -- the golive command through a pipe, and asking for colour ----------------------------------------

def warn_and_break(workspace: Path) -> None:
    vars_file = workspace / "inventories/manufacturer/group_vars/all/main.yml"
    vars_file.write_text(vars_file.read_text() + "plant_cods: [SH01]\n")  # a warning: a near miss


COLOUR_ASKED = {"FORCE_COLOR": "1", "NO_COLOR": "", "TERM": "xterm", "TTY_COMPATIBLE": ""}


def test_golive_through_a_pipe_prints_no_escape_code_and_colours_when_asked(offline_workspace):
    warn_and_break(offline_workspace)
    piped = run_golive(offline_workspace, "validate", check=0)
    assert "golive: warning: " in piped.stderr and ESC not in piped.output, piped.output
    coloured = run_golive(offline_workspace, "validate", env=COLOUR_ASKED, check=0)
    assert coloured.stdout.startswith(GREEN + "workspace ok: "), coloured.output
    assert coloured.stderr.startswith(BOLD_YELLOW + "golive: warning:\x1b[0m inventories/manufacturer/"), \
        coloured.output
    assert ANSI.sub("", coloured.stdout) == piped.stdout and ANSI.sub("", coloured.stderr) == piped.stderr
    for not_here in ({"NO_COLOR": "1"}, {"TERM": "dumb"}, {"TTY_COMPATIBLE": "0"}):
        plain = run_golive(offline_workspace, "validate", env={**COLOUR_ASKED, **not_here}, check=0)
        assert (plain.stdout, plain.stderr) == (piped.stdout, piped.stderr), (not_here, plain.output)
    as_json = run_golive(offline_workspace, "validate", "--json", env=COLOUR_ASKED, check=0)
    assert ESC not in as_json.output and as_json.json()["warnings"], as_json.output


def test_golive_errors_are_red_when_asked_and_plain_through_a_pipe(offline_workspace):
    (offline_workspace / "config_templates/northwind/features.json.j2").write_text("{% for x in y %}\n")
    (offline_workspace / "inventories/retailer/group_vars/all/main.yml").write_text("currency: [\n")
    piped = run_golive(offline_workspace, "validate", check=2)
    errors = [line for line in piped.stderr.splitlines() if line.startswith("golive: error: ")]
    assert len(errors) >= 2 and ESC not in piped.output, piped.output
    coloured = run_golive(offline_workspace, "validate", env=COLOUR_ASKED, check=2)
    assert [line for line in coloured.stderr.splitlines() if line.startswith(BOLD_RED + "golive: error:\x1b[0m ")] \
        and ANSI.sub("", coloured.stderr) == piped.stderr, coloured.output
    # a bad command line with --json: not coloured either (read before argparse knows it)
    refused = run_golive(offline_workspace, "validate", "--json", "--no-such-option", env=COLOUR_ASKED, check=2)
    assert refused.stderr.startswith("golive: error: ") and ESC not in refused.output, refused.output


def on_a_terminal(workspace: Path, *args: str, **env: str) -> str:
    """What `golive ARGS` shows on a real terminal (a pseudo-terminal: stdout and stderr both on it)."""
    main, secondary = pty.openpty()
    inherited = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")}
    process = subprocess.Popen([sys.executable, "-m", "golive", *args, "--workspace", str(workspace)],
                               stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary, cwd=str(workspace),
                               env={**inherited, "PYTHONPATH": str(REPO / "deploy"), "TERM": "xterm", **env})
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    assert process.wait(timeout=WAIT_BOUND_SECONDS) == 2, shown
    return shown.decode()


def test_golive_on_a_real_terminal_is_coloured_unless_no_color(offline_workspace):
    shown = on_a_terminal(offline_workspace, "validate", "nosuch")
    assert shown.startswith(BOLD_RED + "golive: error:\x1b[0m unknown customer 'nosuch'"), shown
    plain = on_a_terminal(offline_workspace, "validate", "nosuch", NO_COLOR="1")
    assert plain.startswith("golive: error: unknown customer 'nosuch'") and ESC not in plain, plain
    assert on_a_terminal(offline_workspace, "validate", "nosuch", "--json") == plain
