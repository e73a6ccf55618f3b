"""Trading through the host: configuration files loaded into the simulated NIC (the Verilated
device), armed, a feed replayed, order frames out (checked by scapy), then killed and silent.
The CLI's trading commands run as a user runs them."""

import asyncio
import subprocess
import sys
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from tickwire.host import api, config
from tickwire.host.device import Device
from tickwire.host.transports import SimTransport
from tickwire.sim.nic import shared_nic
from tickwire.sim.scenario import ab_frames, order_flow
from tickwire.sim.t2t_bench import bench_configuration, first_prices

TICKWIRE = [str(Path(sys.executable).parent / "tickwire")]
EXAMPLES = Path(__file__).resolve().parent.parent / "host" / "examples"
SESSION = {"sequence": 7_000, "ack": 99, "window": 4096}


def checked(frame):
    """scapy's checksums equal the frame's; returns (TCP sequence, payload length)."""
    packet = Ether(frame)
    rebuilt = Ether(frame)
    del rebuilt[IP].chksum, rebuilt[TCP].chksum
    rebuilt = Ether(bytes(rebuilt))
    assert packet[IP].chksum == rebuilt[IP].chksum and packet[TCP].chksum == rebuilt[TCP].chksum
    return packet[TCP].seq, len(packet[TCP].payload)


def check_latency_report(status, latencies):
    """`tickwire status`'s latency tables show the statistics and histogram of `latencies`
    (computed by the test from the order log's own cycle stamps)."""
    from rich.console import Console

    from tickwire.host.cli import _latency_tables

    bins = status["histogram_bins"]["order.histogram_bins"]
    assert bins == {"base": 14, "shift": 1}
    console = Console(record=True, width=200)
    console.print(*_latency_tables("order", bins, status))
    text = console.export_text()
    mean = sum(latencies) / len(latencies)
    assert f"│ {len(latencies):>6,} │ {min(latencies):>3} │ {mean:>4.1f} │ {max(latencies):>3} │" \
        in text, text
    expected = {}
    for latency in latencies:
        k = min(max(0, (latency - 14) // 2 + 1), 17)
        span = ("< 14" if k == 0 else ">= 46" if k == 17 else
                f"{14 + 2 * (k - 1)}..{14 + 2 * k - 1}")
        expected[span] = expected.get(span, 0) + 1
    for span, count in expected.items():
        assert f"{span} │ {count:>6,}" in text or f"{span} │ {count:,}" in text, (span, text)


def test_load_arm_replay_then_kill_and_orders_stop():
    nic = shared_nic()
    nic.reset()
    flow = order_flow(4000, seed=5)
    frames = ab_frames(b"20261122A1", flow, seed=5)
    half = len(frames) // 2

    async def work():
        device = await Device.open(SimTransport(nic))
        plan = config.parse(bench_configuration(first_prices(flow)), device.map, "test.toml")
        await config.load(device, EXAMPLES / "feed.toml")
        for write in plan.writes:
            await device.write(write.register, write.value, index=write.index)
        await device.write("order.histogram_bins", {"base": 14, "shift": 1})
        await api.start_session(device, **SESSION)
        await api.arm(device)
        await api.replay(device, frames[:half])
        before_kill = len(nic.sent)
        await api.kill(device)
        await api.replay(device, frames[half:])
        return (before_kill, await device.counters(), await device.drain("order.log"),
                await device.status())

    before_kill, counters, log, status = asyncio.run(work())
    check_latency_report(status, [e["at"] - e["arrival"] for e in log if e["sent"]])
    assert before_kill > 0 and len(nic.sent) == before_kill, "orders stop after the kill"
    assert counters["order.counters.frames"] == before_kill == len(log)
    # Intents after the kill were refused (api.kill also disarms: armed is checked first).
    assert counters["risk.counters.not_armed"] + counters["risk.counters.killed"] > 0
    sequence = SESSION["sequence"]
    for (frame, _), entry in zip(nic.sent, log, strict=True):
        assert checked(frame) == (sequence, 50) and entry["tcp_sequence"] == sequence
        sequence += 50


def test_configuration_examples_are_valid_together():
    plan = config.read([EXAMPLES / "desk.toml", EXAMPLES / "risk.toml"], api.register_map())
    assert plan.summary() == "8 symbols, 6 takers, 1 pairs, 8 symbol limits"
    result = subprocess.run(TICKWIRE + ["load", "--check", str(EXAMPLES / "desk.toml"),
                                        str(EXAMPLES / "risk.toml")],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "8 symbols, 6 takers" in result.stdout


def test_cli_arm_disarm_kill_on_the_simulated_nic():
    def run(*arguments):
        return subprocess.run(TICKWIRE + list(arguments) + ["--device", "sim"],
                              capture_output=True, text=True)

    armed = run("arm")
    assert armed.returncode == 0 and "(armed 1, killed 0)" in armed.stdout
    killed = run("kill")
    assert killed.returncode == 0 and "(armed 0, killed 1)" in killed.stdout
    assert run("disarm").returncode == 0
    assert "(armed 0, killed 0)" in run("kill", "--clear").stdout


def test_arming_a_killed_device_is_refused():
    nic = shared_nic()
    nic.reset()

    async def work():
        device = await Device.open(SimTransport(nic))
        await api.kill(device)
        try:
            await api.arm(device)
        except RuntimeError as refused:
            return str(refused), await device.read("risk.armed")
        return None, None

    refusal, armed = asyncio.run(work())
    assert "kill switch is set" in refusal and armed == 0
