"""What an artifact requires of a host (golive.core.requires): the declaration's validation and the
comparison with a host's facts. Pure: no host, no file."""

from __future__ import annotations

import pytest

from golive.core.requires import Requirements, host_version, parse_option, parse_requires

HOST = {"python": "3.11.2", "glibc": "2.36", "arch": "x86_64"}


def requires(raw: dict) -> Requirements:
    requirements, problems = parse_requires(raw, "requires")
    assert problems == [], problems
    return requirements


def unmet(raw: dict, facts: dict | None = None) -> list[str]:
    return [u.sentence("acme-1.0.tar.gz") for u in requires(raw).unmet({**HOST, **(facts or {})})]


@pytest.mark.parametrize(("spec", "version", "met"), [
    # numbers compare as numbers, never as text: 3.11 is newer than 3.9.2
    (">=3.11", "3.9.2", False), (">=3.9", "3.11.2", True), (">=3.11", "3.11.0", True), (">=3.11", "3.10.12", False),
    (">=2.28", "2.36", True), (">=2.28", "2.9", False), (">=2.9", "2.10", True),
    # a version names a series: the host's version is cut to the clause's parts
    ("==3.11", "3.11.7", True), ("==3.11", "3.12.0", False), ("==3.11.2", "3.11.2", True),
    ("==3.11.2", "3.11.20", False),
    ("<=3.11", "3.11.7", True), ("<3.12", "3.11.9", True), ("<3.12", "3.12.0", False), (">3.11", "3.11.7", False),
    (">3.11", "3.12.1", True), ("!=3.10", "3.10.4", False), ("!=3.10", "3.11.2", True),
    # a host version with fewer parts than the clause counts the missing parts as 0
    (">=2.28.1", "2.28", False), ("==2.28.0", "2.28", True),
    # several clauses: all must hold
    (">=3.9,<3.12", "3.11.2", True), (">=3.9,<3.12", "3.12.1", False), (">=3.9, <3.12", "3.8.10", False),
])
def test_a_version_requirement_compares_numbers_by_series(spec, version, met):
    assert (unmet({"python": spec}, {"python": version}) == []) is met


def test_an_unmet_version_names_the_requirement_and_what_the_host_has():
    assert unmet({"python": ">=3.11"}, {"python": "3.9.2"}) == [
        "acme-1.0.tar.gz requires python >=3.11; the host has python3 3.9.2"]
    assert unmet({"glibc": ">=2.38"}) == ["acme-1.0.tar.gz requires glibc >=2.38; the host has glibc 2.36"]


def test_a_host_without_glibc_does_not_meet_a_glibc_requirement_and_says_so():
    assert unmet({"glibc": ">=2.28"}, {"glibc": None}) == [
        "acme-1.0.tar.gz requires glibc >=2.28; the host has no glibc (musl or another C library)"]
    assert unmet({"python": ">=3.6"}, {"glibc": None}) == []  # nothing asked of the C library


@pytest.mark.parametrize(("declared", "machine", "met"), [
    (["x86_64", "aarch64"], "x86_64", True), (["x86_64", "aarch64"], "aarch64", True),
    (["x86_64"], "aarch64", False), (["aarch64"], "armv7l", False),
    # Debian/Docker names, on either side
    (["amd64"], "x86_64", True), (["arm64"], "aarch64", True), (["x86_64"], "amd64", True),
    (["AMD64"], "x86_64", True), (["amd64"], "aarch64", False),
])
def test_an_architecture_requirement_is_a_list_with_aliases(declared, machine, met):
    assert (unmet({"arch": declared}, {"arch": machine}) == []) is met


def test_a_wrong_architecture_names_every_accepted_one_and_the_hosts():
    assert unmet({"arch": ["x86_64", "arm64"]}, {"arch": "s390x"}) == [
        "acme-1.0.tar.gz requires arch x86_64 or aarch64; the host has architecture s390x"]


def test_every_unmet_requirement_of_a_host_is_listed():
    found = unmet({"python": ">=3.12", "glibc": ">=2.40", "arch": ["aarch64"]})
    assert [s.split(" requires ")[1].split(";")[0] for s in found] == ["python >=3.12", "glibc >=2.40",
                                                                       "arch aarch64"]


def test_a_fact_the_host_did_not_report_is_unmet():
    assert len(requires({"python": ">=3", "arch": ["x86_64"]}).unmet({})) == 2


def test_no_declaration_requires_nothing():
    requirements, problems = parse_requires(None, "requires")
    assert not requirements and problems == [] and requirements.unmet({}) == []


@pytest.mark.parametrize(("raw", "key", "words"), [
    ({"python": "3.11"}, "python", "not a version requirement"),
    ({"python": ">=3.x"}, "python", "not a version requirement"),
    ({"python": ">= "}, "python", "not a version requirement"),
    ({"python": "~=3.11"}, "python", "not a version requirement"),
    ({"python": ">=3.11,"}, "python", "not a version requirement"),
    ({"glibc": 2.28}, "glibc", "must be a version requirement"),
    ({"glibc": [">=2.28"]}, "glibc", "must be a version requirement"),
    ({"arch": "x86_64"}, "arch", "non-empty list"),
    ({"arch": []}, "arch", "non-empty list"),
    ({"arch": ["x86 64"]}, "arch", "non-empty list"),
    ({"arch": [7]}, "arch", "non-empty list"),
    ({"kernel": ">=5"}, "kernel", "unknown requirement 'kernel'"),
])
def test_a_malformed_declaration_names_the_key(raw, key, words):
    requirements, problems = parse_requires(raw, "acme-1.0.tar.gz: golive-manifest.json requires")
    assert len(problems) == 1, problems
    assert problems[0].where == f"acme-1.0.tar.gz: golive-manifest.json requires.{key}"
    assert words in problems[0].message


def test_a_declaration_that_is_not_a_mapping_is_malformed():
    _, problems = parse_requires([">=3.11"], "requires")
    assert len(problems) == 1 and "must be a mapping" in problems[0].message


def test_the_package_option_gives_the_manifest_declaration():
    requirements, problems = parse_option(["python>=3.11", "glibc >=2.28,<3", "arch=x86_64,amd64,arm64"])
    assert problems == []
    assert requirements.declared() == {"arch": ["x86_64", "aarch64"], "glibc": ">=2.28,<3", "python": ">=3.11"}
    again, _ = parse_requires(requirements.declared(), "requires")
    assert again == requirements  # what the manifest holds reads back as the same requirements


@pytest.mark.parametrize("value", ["python", "python3.11", "arch==x86_64", "arch:x86_64", "os>=12", "=3.11", ""])
def test_a_malformed_package_option_is_refused(value):
    _, problems = parse_option([value])
    assert problems and all(p.where.startswith("--requires") for p in problems), problems


def test_host_versions_are_read_leniently():
    assert host_version("2.36") == (2, 36)
    assert host_version("3.11.2+") == (3, 11, 2)
    assert host_version(None) is None and host_version("") is None and host_version("unknown") is None
