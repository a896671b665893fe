"""Secrets never appear in any output, in any form: the corpus of tests/hostile/secrets_corpus.py.

First the rules themselves, on golive's Redactor and the host agent's Masker with the same corpus
(every form of every secret, every cut), then the corpus planted in a workspace (every kind of
place at once) and grepped, in every form, in every output of every verb, the reports, the JUnit
files and every file golive writes on the hosts, with both engines.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from golive.agent.shared import Masker, read_output_tail
from golive.core.redact import CUT_MARKERS, FLOOR, MASK, Redactor, forms_of, mask_paths
from tests.conftest import host_path, live_release_problems, live_version, run_golive
from tests.hostile.secrets_corpus import (
    FORMS,
    IN_COMMAND,
    IN_URL,
    INLINE,
    NOT_MASKED_IN_TEXT,
    SCHEMA,
    SECRETS,
    VAULT_FILE,
    findings,
    texts,
)
from tests.integration.drift_support import on_host

TEXTS = sorted({t for s in SECRETS if s.as_text for t in texts(s.value)})
PAD = "=" * 9  # around a secret: shares no character with any of them


def redactor() -> Redactor:
    return Redactor([s.value for s in SECRETS])


def masker() -> Masker:
    return Masker(forms_of(TEXTS))


def windows(text: str, size: int = FLOOR) -> set[str]:
    return {text[i:i + size] for i in range(len(text) - size + 1)}


def leftovers(result: str, secret: str) -> set[str]:
    """Pieces of the secret (FLOOR characters) left in a result."""
    return {w for w in windows(secret) if w in result and w not in PAD and w not in MASK}


# -- the rules --------------------------------------------------------------------------------------

@pytest.mark.parametrize("form", [f for f in FORMS if f not in NOT_MASKED_IN_TEXT])
def test_every_form_of_every_secret_is_masked_by_golive_and_by_the_host_agent(form):
    redact, mask = redactor(), masker()
    for text in TEXTS:
        shown = FORMS[form](text)
        line = f"before {shown} after"
        assert redact.text(line) == mask.text(line), f"{form} of {text[:30]!r}: the two sides differ"
        masked = redact.text(line)
        assert masked.startswith("before ") and masked.endswith(" after") and MASK in masked, (form, text[:30])
        assert findings(masked) == [], f"{form} of {text[:30]!r} leaked: {masked[:200]!r}"


def test_each_line_of_a_secret_is_masked_where_a_diff_or_an_indent_split_it():
    secret = next(s.value for s in SECRETS if "\n" in str(s.value))
    diff = "\n".join(f"+    {line}" for line in secret.splitlines())
    assert all(line not in redactor().text(diff) for line in secret.splitlines())
    assert all(line not in masker().text(diff) for line in secret.splitlines())


def test_a_cut_made_by_golive_never_leaves_part_of_a_secret():
    redact = redactor()
    for text in TEXTS:
        full = PAD + text + PAD
        for limit in range(1, len(full) + 1, max(1, len(full) // 60)):
            for result in (redact.tail(full, limit), redact.head(full, limit, ellipsis=""),
                           masker().tail(full, limit), masker().head(full, limit)):
                assert not leftovers(result, text), (text[:30], limit, result)


def test_output_cut_at_any_byte_is_masked_on_the_raw_bytes_first():
    """A host's command output is cut to its tail; a secret with multi-byte characters may be split
    anywhere, inside a character too: masked on the bytes before the cut and the decoding."""
    mask = masker()
    for text in TEXTS:
        data = PAD.encode() + text.encode() + PAD.encode()
        for limit in range(1, len(data) + 1, max(1, len(data) // 80)):
            result = mask.tail_bytes(data, limit)
            assert not leftovers(result, text), (text[:30], limit, result)


def test_an_output_file_is_read_from_its_end_and_masked_whole(tmp_path):
    """The host agent reads only the end of a long output: a secret crossing where it starts reading
    or where it cuts is still masked whole."""
    mask = masker()
    secret = next(t for t in TEXTS if len(t) > 2000)
    for before in (0, 10, 3000, 5000):
        path = tmp_path / f"out-{before}"
        path.write_bytes(b"x" * before + secret.encode() + b"y" * 700)
        for limit in (500, 4000):
            with path.open("rb") as handle:
                result = read_output_tail(handle, limit, mask)
            assert not leftovers(result, secret) and len(result.encode()) <= limit, (before, limit)


def test_text_someone_else_cut_is_masked_at_its_edges_and_cut_marks():
    """pytest shortens a long value to its two ends around '...'; a tail kept by another program starts
    inside a secret: what is left of a secret next to a cut is masked too."""
    redact = redactor()
    for text in (t for t in TEXTS if len(t) > 12):
        head, tail = text[: len(text) // 3], text[-(len(text) // 3):]
        shortened = f"assert '{head}...{tail}' == 'x'"
        assert not leftovers(redact.cut(shortened, markers=CUT_MARKERS), text), text[:30]
        assert not leftovers(redact.cut(tail + " rest of the output", start=True), text), text[:30]
        assert not leftovers(redact.cut("output up to " + head, end=True), text), text[:30]


def test_overlapping_secrets_are_both_masked_whole():
    redact = Redactor(["Abc-Def-Ghi", "Ghi-Jkl-Mno"])
    assert redact.text("x Abc-Def-Ghi-Jkl-Mno y") == f"x {MASK} y"
    assert Masker(["Abc-Def-Ghi", "Ghi-Jkl-Mno"]).text("x Abc-Def-Ghi-Jkl-Mno y") == f"x {MASK} y"


def test_numbers_and_nested_values_are_secrets_of_their_own():
    redact = redactor()
    assert redact.data({"pin": 48213377, "ratio": 2718.2818, "ok": True, "port": 8080}) == \
        {"pin": MASK, "ratio": MASK, "ok": True, "port": 8080}
    assert redact.text("pin 48213377 and Nest-List-7y") == f"pin {MASK} and {MASK}"


def test_a_value_under_the_floor_is_masked_by_its_variable():
    variables = {"corpus_short": "Q7x", "corpus_bool": True, "corpus_nested": {"user": "u", "pins": [1, 2]},
                 "plain": "Q7x"}
    shown = mask_paths(variables, {"corpus_short", "corpus_bool", "corpus_nested.pins[1]"})
    assert shown == {"corpus_short": MASK, "corpus_bool": MASK, "corpus_nested": {"user": "u", "pins": [1, MASK]},
                     "plain": "Q7x"}
    assert Redactor(["Q7x"]).text("Q7x") == "Q7x"  # free text: under the floor, by design


def test_drift_shows_no_secret_variable_whatever_its_length_or_type():
    from types import SimpleNamespace

    from golive.core.model import Connection, Host
    from golive.flows.drift import _value

    host = Host("h", "c", "staging", (), {}, Connection("h"), frozenset({"Q7x", "Bs\\Temp\\x41"}),
                secret_paths=frozenset({"corpus_short", "db.pw", "corpus_bool"}))
    ws = SimpleNamespace(app=SimpleNamespace(secret_var_names=frozenset()), redactor=Redactor(host.secret_values))
    for name, value in (("corpus_short", "Q7x"), ("db", {"pw": "ab", "host": "x"}), ("corpus_bool", True),
                        ("url", {"u": "x:Bs\\Temp\\x41@y"})):  # a backslash: json.dumps would double it
        assert _value(ws, host, name, value).shown == MASK, name
    assert _value(ws, host, "plain", "Q7x").shown == "Q7x"  # the same text, not from a secret variable


def test_schema_messages_name_a_secret_and_never_show_it():
    from golive.core.model import AppDefinition, Connection, EnvironmentSpec, Host, VarSpec
    from golive.core.schema import check_host_vars

    app = AppDefinition("a", "/r", "/c", (EnvironmentSpec("staging"),), (),
                        variables=(VarSpec("corpus_short", "int"), VarSpec("db", "str"),
                                   VarSpec("level", "str", allowed=("info",))))
    host = Host("h", "c", "staging", (), {"corpus_short": "Q7x", "db": {"pw": "Bs\\x"}, "level": "x-Bs\\Temp"},
                Connection("h"), frozenset({"Bs\\Temp"}), secret_paths=frozenset({"corpus_short", "db.pw"}))
    messages = [p.message for p in check_host_vars(app, host)]
    assert len(messages) == 3 and all("(secret)" in m for m in messages), messages
    assert not any(s in m for m in messages for s in ("Q7x", "Bs", "\\\\")), messages


def test_a_secret_file_digest_is_masked_whole_and_shortened():
    digest = "ab" * 32
    redact = Redactor()
    redact.add_digest(digest)
    assert digest not in redact.text(f"sha256 {digest}") and digest[:16] not in redact.text(f"({digest[:16]})")


# -- the corpus planted in a workspace ----------------------------------------------------------------

ANSIBLE_VAULT = str(Path(sys.executable).with_name("ansible-vault"))
ALL_VARS = "inventories/manufacturer/group_vars/all"
SECRET_TEMPLATE = "config_templates/northwind/customers/manufacturer/secrets.env.j2"  # the manufacturer's own


def _vault(ws: Path, *args: str) -> str:
    # without the workspace's ansible.cfg: it names the vault password file already
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}
    return subprocess.run([ANSIBLE_VAULT, *args, "--vault-password-file", str(ws / "vault-password.example")],
                          capture_output=True, text=True, check=True, cwd="/", env=env).stdout


def _accessors(expression: str, value) -> list[str]:
    """A Jinja expression for every leaf of a value (the template prints each one)."""
    if isinstance(value, dict):
        return [a for k, v in value.items() for a in _accessors(f"{expression}.{k}", v)]
    if isinstance(value, list):
        return [a for i, v in enumerate(value) for a in _accessors(f"{expression}[{i}]", v)]
    return [expression]


def _shell_quoted(variable: str) -> str:
    """A variable as one shell word, in Jinja: Ansible's `quote` filter (golive.yml refuses a value put
    into a command unquoted; golive's renderer and Ansible's agree)."""
    return "{{ " + variable + " | default('') | quote }}"  # only the manufacturer's hosts have it


def plant(ws: Path) -> None:
    """Every secret of the corpus in the workspace at once, each from its kind of place; all of them
    rendered into the secret file; one in the restart command and in the hooks (shell-quoted), one in
    the health URL (URL-encoded, kept for the failure phase: the example service refuses a query)."""
    inline = [s for s in SECRETS if s.source == INLINE]
    names = [a for s in inline for a in ("--name", s.name)]
    (ws / ALL_VARS / "corpus_inline.yml").write_text(_vault(ws, "encrypt_string", *names,
                                                            *[str(s.value) for s in inline]))
    plain = ws / "corpus-plain.yml"
    plain.write_text(yaml.safe_dump({s.name: s.value for s in SECRETS if s.source == VAULT_FILE}, allow_unicode=True))
    _vault(ws, "encrypt", "--output", str(ws / ALL_VARS / "corpus_vault.yml"), str(plain))
    plain.unlink()
    (ws / ALL_VARS / "corpus_plain.yml").write_text(
        yaml.safe_dump({s.name: s.value for s in SECRETS if s.source == SCHEMA}, allow_unicode=True))
    template = ws / SECRET_TEMPLATE
    template.write_text((ws / "config_templates/northwind/secrets.env.j2").read_text() + "".join(
        f"CORPUS_{i}={{{{ {a} }}}}\n" for i, a in enumerate(a for s in SECRETS for a in _accessors(s.name, s.value))))
    app = yaml.safe_load((ws / "golive.yml").read_text())
    app["variables"].update({s.name: {"type": "any", "secret": True} for s in SECRETS if s.source == SCHEMA})
    app["service"]["restart"] = f"CORPUS={_shell_quoted(IN_COMMAND)} {app['service']['restart']}"
    app["hooks"]["after_cutover"] = f"test -n {_shell_quoted(IN_COMMAND)}"
    (ws / "golive.yml").write_text(yaml.safe_dump(app, allow_unicode=True, sort_keys=False))


def set_app(ws: Path, **changes: dict) -> str:
    """Change golive.yml sections (e.g. hooks={...}); returns the text before, to put back."""
    before = (ws / "golive.yml").read_text()
    app = yaml.safe_load(before)
    for section, values in changes.items():
        app[section].update(values)
    (ws / "golive.yml").write_text(yaml.safe_dump(app, allow_unicode=True, sort_keys=False))
    return before


def new_config(ws: Path) -> tuple[Path, str]:
    """A change of config: the next deploy makes a new release (its run file is written then).
    Returns the file and its text before, to put back."""
    staging = ws / "inventories/manufacturer/group_vars/staging.yml"
    before = staging.read_text()
    staging.write_text(before + "log_level: debug\n")
    return staging, before


FAILING_HOOK = "cat config/secrets.env; exit 1"  # prints every secret of the corpus, then fails
FAILING_URL = {"url": "http://{{ listen_address }}:{{ http_port }}/health?token={{ " + IN_URL + " | urlencode }}",
               "retries": 2}


@dataclass
class Sinks:
    """What one workspace's runs printed and wrote, and the digests of its secret files."""

    ws: Path
    digests: set[str]
    runs: int = 0
    leaked: list[str] = field(default_factory=list)  # every leak, reported together at the end

    def leaks(self, text: str, words: bool = True) -> list[str]:
        found = findings(text, words=words)
        found += [f"secret file digest {d[:12]}" for d in self.digests for cut in (d, d[:16], d[:12]) if cut in text]
        return found

    def run(self, *args: str, code: int | None = None):
        result = run_golive(self.ws, *args)
        self.runs += 1
        self.leaked += [f"golive {' '.join(args)}: {leak}" for leak in self.leaks(result.output)]
        if code is not None:
            assert result.returncode == code, f"golive {' '.join(args)} exited {result.returncode}:\n{result.output}"
        return result

    def file(self, path: Path) -> None:
        """A file golive wrote (a report, JUnit): its own words ("verified") are not the secret's."""
        assert path.is_file(), f"{path} was not written"
        self.leaked += [f"{path.name}: {leak}" for leak in self.leaks(path.read_text(errors="replace"), words=False)]


def secret_file_digests(sinks: Sinks, out: Path) -> set[str]:
    import hashlib

    sinks.run("render", "manufacturer", "staging", "--out", str(out), code=0)
    sinks.run("render", "manufacturer", "production", "--out", str(out), code=0)
    files = sorted(out.glob("*/secrets.env"))
    assert len(files) == 3 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert all("Nest-List-7y" in f.read_text() for f in files)  # the file holds the corpus
    return {hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


PRIVATE_FILES = ("ledger.jsonl", ".run.json", "owner.json")  # may hold what a host printed: 0600


def host_files(test_hosts, sinks: Sinks, suffixes: tuple[int, ...]) -> list[str]:
    """Every file golive writes under the application root and the config dir, but the rendered
    config (its templates decide what it holds; secret files 0600) and the application's own shared
    data: what holds a secret of the corpus or a digest of a secret file, and what is not 0600 that
    must be. Run files (0600) hold the rendered commands by design, and are checked for their mode."""
    problems = []
    vendors = artifact_members(sinks.ws / "build" / "releases")
    for suffix in suffixes:
        for top in ("/opt/northwind", "/etc/northwind"):
            base = host_path(test_hosts, suffix, top)
            for directory, _, names in os.walk(base):
                for name in names:
                    path = Path(directory, name)
                    shown = f".{suffix}:{top}/{path.relative_to(base)}"
                    if path.is_symlink() or "/shared/" in shown or "/.golive/artifacts/" in shown:
                        continue
                    inside = path.relative_to(base).parts
                    if top == "/opt/northwind" and inside[0] == "releases" and "/".join(inside[2:]) in vendors:
                        continue  # the vendor's own file, as the artifact holds it (a driver's "TRUE")
                    mode = stat.S_IMODE(path.stat().st_mode)
                    if path.parent.name == "config" and "/releases/" in shown:
                        if name == "secrets.env" and mode != 0o600:
                            problems.append(f"{shown}: mode {mode:04o}")
                        continue
                    if name.endswith(PRIVATE_FILES) and mode != 0o600:
                        problems.append(f"{shown}: mode {mode:04o}, not 0600")
                    if name.endswith(".run.json"):
                        continue
                    text = path.read_bytes().decode("utf-8", "replace")
                    problems += [f"{shown}: {f}" for f in sinks.leaks(text, words=False)]
    return problems


def artifact_members(store: Path) -> set[str]:
    """The files of every artifact in the release store, as paths inside a release directory."""
    members = set()
    for artifact in (path for path in store.iterdir() if tarfile.is_tarfile(path)):
        with tarfile.open(artifact) as archive:
            members |= {m.name.removeprefix("./") for m in archive.getmembers() if m.isfile()}
    return members


def metadata_problems(test_hosts, suffix: int) -> list[str]:
    """Release metadata (0644) holds no rendered command, URL, hook or secret file digest."""
    problems = []
    for path in sorted(host_path(test_hosts, suffix, "/opt/northwind/.golive/releases").glob("*.json")):
        if path.name.endswith(".run.json"):
            continue
        meta = json.loads(path.read_text())
        problems += [f"{path.name}: {key}" for key in ("service", "health", "hooks") if key in meta]
        problems += [f"{path.name}: digest of {f['dest']}" for f in meta.get("config_files", [])
                     if f.get("secret") and "sha256" in f]
        run = path.with_name(path.name[:-5] + ".run.json")
        if not run.is_file() or stat.S_IMODE(run.stat().st_mode) != 0o600:
            problems.append(f"{run.name}: missing or not 0600")
    return problems


@pytest.fixture
def corpus(workspace, tmp_path) -> Sinks:
    plant(workspace)
    sinks = Sinks(workspace, set())
    sinks.digests = secret_file_digests(sinks, tmp_path / "rendered")
    return sinks


def test_the_corpus_never_shows_with_the_pyinfra_engine(corpus, test_hosts, tmp_path):
    ws, run = corpus.ws, corpus.run
    out = tmp_path / "out"
    # without a host: every verb, every flag
    for extra in ((), ("--json",), ("-v",), ("-vv", "--json")):
        run("inventory", "manufacturer", *extra, code=0)
        run("validate", *extra, code=0)
        run("render", "manufacturer", "staging", *extra, code=0)
    shown = run("inventory", "manufacturer", "--json", code=0).json()["hosts"]["mfg-stg-1"]["vars"]
    for secret in SECRETS:  # by variable, whatever its type or length
        assert shown[secret.name] == MASK, (secret.name, shown[secret.name])
    rendered = run("render", "manufacturer", "staging", "--json", code=0).json()["hosts"]["mfg-stg-1"]["files"]
    assert [set(f) for f in rendered if f["secret"]] == [{"dest", "mode", "secret"}]  # no digest, no size
    # deploy, then every verb that reads the hosts, text and JSON
    run("deploy", "manufacturer", "staging", "--release", "1.0", "-v", code=0)
    run("deploy", "manufacturer", "staging", "--release", "1.0", "--json", "-vv", code=0)  # unchanged
    for extra in ((), ("--json",)):
        run("plan", "manufacturer", "staging", "--release", "1.1", *extra, code=0)
        run("status", "manufacturer", "staging", *extra, code=0)
        run("history", "manufacturer", "staging", *extra, code=0)
        run("check", "manufacturer", "staging", "--junit", str(out / "check.xml"), *extra)
        run("drift", "manufacturer", *extra)
        run("preflight", "manufacturer", "--release", "1.0", "--report", str(out / "report"),
            "--junit", str(out / "preflight.xml"), *extra)
    for report in ("check.xml", "preflight.xml", "report/report.md", "report/report.html"):
        corpus.file(out / report)
    run("deploy", "manufacturer", "production", "--release", "1.0", "--override-promotion", "corpus", "-v", code=0)
    run("deploy", "manufacturer", "staging", "--release", "1.1", "--json", code=0)
    run("rollback", "manufacturer", "staging", "-v", code=0)
    # failure paths: a hook that prints the secret file and fails; a health URL holding a secret;
    # a broken release; a template error next to a secret
    before = set_app(ws, hooks={"before_cutover": FAILING_HOOK})
    for extra in (("-v",), ("--json",)):
        assert MASK in run("deploy", "manufacturer", "staging", "--release", "1.1", *extra, code=3).output
    (ws / "golive.yml").write_text(before)
    vars_file, vars_before = new_config(ws)  # a release configured now records the failing health check
    set_app(ws, health=FAILING_URL)
    failed = run("deploy", "manufacturer", "staging", "--release", "1.1", "--json", "-v", code=3)
    assert "/health?token=" in failed.stdout  # the URL is shown, its secret is not
    run("check", "manufacturer", "staging", "--junit", str(out / "check-failing.xml"), code=1)
    corpus.file(out / "check-failing.xml")
    run("drift", "manufacturer", "--json")
    (ws / "golive.yml").write_text(before)
    vars_file.write_text(vars_before)
    run("deploy", "manufacturer", "staging", "--release", "9.9", "-v", code=3)
    run("history", "manufacturer", "staging", "--json", "--limit", "50", code=0)
    template = ws / SECRET_TEMPLATE
    clean = template.read_text()
    for broken in ("{{ corpus_backslash }}{{ nosuchvar }}", "{{ {}[corpus_backslash] }}", "{{ {}[corpus_unicode] }}"):
        template.write_text(clean + broken + "\n")
        for verb in (("render", "manufacturer", "staging"), ("validate",)):
            run(*verb, "-v", code=2)
    template.write_text(clean)
    corpus.leaked += host_files(test_hosts, corpus, (11, 12, 13)) + metadata_problems(test_hosts, 11)
    assert corpus.leaked == []
    assert corpus.runs >= 45


def test_the_corpus_never_shows_with_the_ansible_engine(corpus, test_hosts, tmp_path):
    ws, run = corpus.ws, corpus.run
    run("deploy", "manufacturer", "staging", "--release", "1.0", "--engine", "ansible", "-v", code=0)
    run("deploy", "manufacturer", "staging", "--release", "1.1", "--engine", "ansible", "--check", "--diff", code=0)
    env = {**os.environ, "ANSIBLE_CONFIG": str(ws / "ansible.cfg")}
    by_hand = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", "inventories/manufacturer",
                              "playbooks/deploy.yml", "--limit", "staging", "-e", "golive_release_version=1.1",
                              "--check", "--diff", "-v"], capture_output=True, text=True, cwd=ws, env=env)
    assert by_hand.returncode == 0, by_hand.stdout[-3000:]
    # Ansible's own output, which golive does not see: the role shows no secret (its task names are
    # its own words)
    corpus.leaked += [f"ansible-playbook by hand: {leak}"
                      for leak in corpus.leaks(by_hand.stdout + by_hand.stderr, words=False)]
    before = set_app(ws, hooks={"before_cutover": FAILING_HOOK})
    hooked = run("deploy", "manufacturer", "staging", "--release", "1.1", "--engine", "ansible", "--json", code=3)
    assert MASK in hooked.output, hooked.output
    (ws / "golive.yml").write_text(before)
    vars_file, vars_before = new_config(ws)  # a release configured now records the failing health check
    set_app(ws, health=FAILING_URL)
    run("deploy", "manufacturer", "staging", "--release", "1.1", "--engine", "ansible", "-v", code=3)
    (ws / "golive.yml").write_text(before)
    vars_file.write_text(vars_before)
    run("deploy", "manufacturer", "staging", "--release", "1.1", "--engine", "ansible", "--json", code=0)
    run("rollback", "manufacturer", "staging", "--engine", "ansible", "-v", code=0)
    run("history", "manufacturer", "staging", "--json", code=0)
    corpus.leaked += host_files(test_hosts, corpus, (11,)) + metadata_problems(test_hosts, 11)
    assert corpus.leaked == []


# -- hosts deployed before the run files ----------------------------------------------------------------

def as_deployed_before_run_files(test_hosts, suffix: int, hook: str) -> list[str]:
    """Put every release of a host back into the layout golive wrote before it kept the rendered
    commands apart: service, health and hooks (here with an on_rollback hook) in the metadata,
    every config file's digest there too, no run file; and a ledger readable by everyone."""
    state = host_path(test_hosts, suffix, "/opt/northwind/.golive")
    converted = []
    for run_file in sorted(state.glob("releases/*.run.json")):
        meta_file = run_file.with_name(run_file.name.replace(".run.json", ".json"))
        run, meta = json.loads(run_file.read_text()), json.loads(meta_file.read_text())
        digests = run.pop("secret_files")
        meta.update(run, hooks={**run["hooks"], "on_rollback": hook})
        meta["config_files"] = [{**f, "sha256": f.get("sha256") or digests[f["dest"]]} for f in meta["config_files"]]
        meta_file.write_text(json.dumps(meta, sort_keys=True))
        run_file.unlink()
        converted.append(meta["id"])
    (state / "ledger.jsonl").chmod(0o644)
    return converted


@pytest.mark.parametrize("engine", ["pyinfra", "ansible"])
def test_either_engine_runs_releases_deployed_before_run_files(workspace, test_hosts, engine):
    """A release without a run file restarts, verifies and runs its hooks from its metadata, with
    either engine; the ledger becomes 0600 at the next entry."""
    for version in ("1.0", "1.1"):
        run_golive(workspace, "deploy", "manufacturer", "staging", "--release", version, check=0)
    marker = "data/rolled-back-by-old-metadata"  # releases/<id>/data is shared/data
    assert len(as_deployed_before_run_files(test_hosts, 11, f"echo $GOLIVE_RELEASE > {marker}")) == 2
    run_golive(workspace, "rollback", "manufacturer", "staging", "--engine", engine, check=0)
    assert live_version(test_hosts, 11) == "1.0" and live_release_problems(test_hosts, 11) == []
    hooked = host_path(test_hosts, 11, "/opt/northwind/shared/" + marker)
    assert hooked.read_text().strip().startswith("1.0-"), "the old metadata's on_rollback hook did not run"
    ledger = host_path(test_hosts, 11, "/opt/northwind/.golive/ledger.jsonl")
    assert stat.S_IMODE(ledger.stat().st_mode) == 0o600
    # 1.1 was rolled back from: a plain rollback never goes back to it, `--to` does
    run_golive(workspace, "rollback", "manufacturer", "staging", "--to", "1.1", "--engine", engine, check=0)
    assert live_version(test_hosts, 11) == "1.1" and live_release_problems(test_hosts, 11) == []
    # drift reads how the release runs from its metadata too: a stopped service is found
    on_host(test_hosts, 11, "/opt/northwind/current/bin/northwind-ctl stop")
    drift = run_golive(workspace, "drift", "manufacturer", "--json")
    stopped = [f for f in drift.json()["findings"]
               if (f["kind"], f["subject"], f["hosts"]) == ("service", "state", ["mfg-stg-1"])]
    assert stopped and stopped[0]["actual_value"] == "stopped", drift.stdout
