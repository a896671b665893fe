"""The service runs, listens where its health check asks, and passes the health check deploy's
verify applies (golive.yml `health:`, docs/health.md)."""

import pytest


def test_service_is_running(host, golive):
    if not golive.service_status:
        pytest.skip("golive.yml declares no service status command (service.status or service.systemd_unit)")
    status = host.run(golive.service_status)
    assert status.rc == 0, f"`{golive.service_status}` exited {status.rc}: {golive.tail(status.stdout.strip(), 200)}"


def test_port_listens_on_the_host_address(host, golive):
    if golive.port is None:
        pytest.skip("the health check is a command: golive knows no port to look at")
    # ss filters by port in the kernel; the address is picked here, so that the command is the same
    # on every host (golive check runs such commands on the whole fleet at once)
    listening = host.check_output("ss -Hltn sport = :%s", str(golive.port))
    local = {line.split()[3] for line in listening.splitlines() if len(line.split()) > 3}
    wildcards = {f"0.0.0.0:{golive.port}", f"*:{golive.port}", f"[::]:{golive.port}"}
    assert ({f"{golive.address}:{golive.port}"} | wildcards) & local, \
        f"nothing listens on {golive.address}:{golive.port} (listening: {', '.join(sorted(local)) or 'nothing'})"


def test_health_check_passes(golive, health_check):
    expect = f" (expect: {', '.join(golive.health_expect)})" if golive.health_expect else ""
    assert not health_check.problem, f"{health_check.what}{expect}: {health_check.problem} " \
                                     f"(not restarted after a change? see docs/health.md)"
