"""What the customer requires of the host: disk space, its time zone and its locale.

The test hosts share one operating system, so "requires" means: the zone's tzinfo file exists on
the host, the locale is available there (generated, or its definition shipped so it can be), and
the application is configured with both and reports them at /health. The host's own system time
zone is not the customer's: the application formats with its configured zone.
"""


def test_free_disk_above_the_minimum(host, golive):
    minimum_mb = int(golive.vars["min_free_disk_mb"])
    available_kb = int(host.check_output("df -Pk %s", golive.root).splitlines()[-1].split()[3])
    assert available_kb // 1024 >= minimum_mb, \
        f"{available_kb // 1024} MB free under {golive.root}, the customer requires {minimum_mb} MB"


def test_time_zone_exists_and_is_used(host, golive, health):
    zone = golive.vars["timezone"]
    magic = host.run("head -c 4 %s", f"/usr/share/zoneinfo/{zone}").stdout
    assert magic == "TZif", f"no time zone data for {zone} on the host (install tzdata)"
    assert (health.get("company") or {}).get("timezone") == zone, \
        f"the application reports time zone {(health.get('company') or {}).get('timezone')}, want {zone}"


def test_locale_is_available_and_used(host, golive, health):
    wanted = golive.vars["locale"]
    language, _, charset = wanted.partition(".")
    normal = f"{language}.{charset.lower().replace('-', '')}" if charset else language
    found = host.run("locale -a; test -e /usr/share/i18n/locales/%s && echo definition:%s", language, language)
    available = set(found.stdout.split())
    assert normal in available or wanted in available or f"definition:{language}" in available, \
        f"locale {wanted} is neither generated nor defined on the host (install locales, run locale-gen)"
    assert (health.get("company") or {}).get("locale") == wanted, \
        f"the application reports locale {(health.get('company') or {}).get('locale')}, want {wanted}"
