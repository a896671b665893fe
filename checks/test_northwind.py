"""The example product's own checks: what northwind reports beyond golive's health contract.

Checks of a product go beside golive's generic ones (test_release, test_config, test_service,
test_platform); a customer's own go under customers/<customer>/.

The test hosts share one operating system, so "the customer's time zone and locale" means: the
zone's tzinfo file exists on the host, the locale is available there (generated, or its definition
shipped so it can be), and northwind is configured with both and reports them at /health. The host's
own system time zone is not the customer's: northwind formats with its configured zone.
"""


def test_time_zone_exists_and_is_used(host, golive, health):
    zone = golive.vars["timezone"]
    magic = host.run("head -c 4 %s", f"/usr/share/zoneinfo/{zone}").stdout
    assert magic == "TZif", f"no time zone data for {zone} on the host (install tzdata)"
    assert (health.get("company") or {}).get("timezone") == zone, \
        f"northwind reports time zone {(health.get('company') or {}).get('timezone')}, want {zone}"


def test_locale_is_available_and_used(host, golive, health):
    wanted = golive.vars["locale"]
    language, _, charset = wanted.partition(".")
    normal = f"{language}.{charset.lower().replace('-', '')}" if charset else language
    found = host.run("locale -a; test -e /usr/share/i18n/locales/%s && echo definition:%s", language, language)
    available = set(found.stdout.split())
    assert normal in available or wanted in available or f"definition:{language}" in available, \
        f"locale {wanted} is neither generated nor defined on the host (install locales, run locale-gen)"
    assert (health.get("company") or {}).get("locale") == wanted, \
        f"northwind reports locale {(health.get('company') or {}).get('locale')}, want {wanted}"


def test_the_serving_process_runs_the_live_release(host, golive, health):
    assert health.get("status") == "ok", f"{golive.health_url}: {health.get('error') or health.get('status')}"
    command_line = host.run("tr '\\0' ' ' < /proc/%s/cmdline", str(health.get("pid"))).stdout
    assert "northwind.server" in command_line, f"pid {health.get('pid')} is not the server: {command_line!r}"
    assert health.get("release") == golive.current, \
        f"the process serves release {health.get('release')}, `current` is {golive.current}"
