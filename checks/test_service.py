"""The service runs, listens on the host's own address, and serves this release with this config."""


def test_service_is_running(host, golive):
    status = host.run(golive.service_status)
    assert status.rc == 0, f"`{golive.service_status}` exited {status.rc}: {golive.tail(status.stdout.strip(), 200)}"


def test_port_listens_on_the_host_address(host, golive):
    # ss filters by port in the kernel; the address is picked here, so that the command is the same
    # on every host (golive check runs such commands on the whole fleet at once)
    listening = host.check_output("ss -Hltn sport = :%s", str(golive.port))
    local = {line.split()[3] for line in listening.splitlines() if len(line.split()) > 3}
    wildcards = {f"0.0.0.0:{golive.port}", f"*:{golive.port}", f"[::]:{golive.port}"}
    assert ({f"{golive.address}:{golive.port}"} | wildcards) & local, \
        f"nothing listens on {golive.address}:{golive.port} (listening: {', '.join(sorted(local)) or 'nothing'})"


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
