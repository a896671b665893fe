"""The service runs, listens on the host's own address, and serves this release with this config."""


def test_service_is_running(host, golive):
    status = host.run(golive.service_status)
    assert status.rc == 0, f"`{golive.service_status}` exited {status.rc}: {status.stdout.strip()[-200:]}"


def test_port_listens_on_the_host_address(host, golive):
    # ss filters in the kernel: one command, however many sockets the host has
    listening = host.check_output("ss -Hltn src %s sport = :%s", golive.address, str(golive.port))
    assert listening.strip(), f"nothing listens on {golive.address}:{golive.port}"


def test_health_reports_the_release_and_config(golive, health):
    assert health.get("status") == "ok", f"{golive.health_url}: {health.get('error') or health.get('status')}"
    reported = (health.get("version"), health.get("config_hash"))
    assert reported == (golive.version, golive.config_hash), (
        f"/health reports version {reported[0]} config {str(reported[1])[:16]}, want {golive.version} "
        f"config {golive.config_hash[:16]} (not restarted after a change?)")


def test_the_serving_process_runs_the_live_release(host, golive, health):
    command_line = host.run("tr '\\0' ' ' < /proc/%s/cmdline", str(health.get("pid"))).stdout
    assert "northwind.server" in command_line, f"pid {health.get('pid')} is not the server: {command_line!r}"
    assert health.get("release") == golive.current, \
        f"the process serves release {health.get('release')}, `current` is {golive.current}"
