"""The Prometheus exporter (tickwire.host.prometheus): every counter, alarm and numeric status
register with the value the driver reads, through prometheus_client's own exposition and
through a real HTTP scrape parsed by prometheus_client's parser; and `tickwire watch
--prometheus`. Loopback only; every server is on an ephemeral port."""

import asyncio
import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tickwire.hdl.platform.device import design_identity, device_register_map
from tickwire.host.api import connect, replay_default_scenario
from tickwire.host.device import Device
from tickwire.host.prometheus import Exporter, counter_metric, serve
from tickwire.host.transports import PcieBar

TICKWIRE = [str(Path(sys.executable).parent / "tickwire")]
REGS = device_register_map()
COUNTERS = [r.name for r in REGS if r.kind == "counter"]
ALARMS = [f.name for f in REGS["feed.alarms"].fields]


def put(words, name, value, index=0):
    register = REGS[name]
    address = register.entry_address(index)
    for k in range(register.words):
        words[address + k] = (value >> (32 * k)) & 0xFFFFFFFF


def bar_image(path, counters=None, alarms=0b010, next_sequence=(301, 7, 1, 1 << 40)):
    """A BAR file as the gateware would present it: distinct counter values, `alarms` set."""
    words = [0] * (REGS.size + 16)
    put(words, "id.magic", REGS["id.magic"].value)
    put(words, "id.identity", design_identity())
    counters = counters or {name: 1000 + 17 * k for k, name in enumerate(COUNTERS)}
    for name, value in counters.items():
        put(words, name, value)
    put(words, "feed.alarms", alarms)
    for feed, value in enumerate(next_sequence):
        put(words, "feed.next_sequence", value, feed)
    path.write_bytes(b"".join(w.to_bytes(4, "little") for w in words))
    return path


def samples(text):
    """{(sample name, sorted labels): value} parsed by prometheus_client's parser, and the
    families {name: (type, documentation)}."""
    values, families = {}, {}
    for family in text_string_to_metric_families(text):
        families[family.name] = (family.type, family.documentation)
        for sample in family.samples:
            values[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return values, families


def counter_key(register_name):
    name, labels = counter_metric(register_name)
    return f"{name}_total", tuple(sorted(labels.items()))


def scrape(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


def check_exposition(text, counters, status, identity):
    """`text` exports every counter of the map with its value in `counters`, every alarm and
    the next sequence of every feed as in `status`, and the design identity."""
    values, families = samples(text)
    for name in COUNTERS:
        assert values[counter_key(name)] == counters[name], name
        family = counter_key(name)[0].removesuffix("_total")
        assert families[family][0] == "counter" and REGS[name].doc in families[family][1]
    for alarm in ALARMS:
        assert values["tickwire_feed_alarms", (("alarm", alarm),)] == status["feed.alarms"][alarm]
    assert families["tickwire_feed_alarms"] == ("gauge", f"{REGS['feed.alarms'].doc} "
                                                         "(feed.alarms)")
    for feed, value in enumerate(status["feed.next_sequence"]):
        assert values["tickwire_feed_next_sequence", (("feed", str(feed)),)] == value
    assert values["tickwire_design_info", (("identity", f"{identity:016x}"),)] == 1
    assert families["tickwire_design_info"][0] == "gauge"    # the text format has no info
    return values


def test_metric_names_follow_the_register_map():
    assert counter_metric("feed.counters.udp.frames") == ("tickwire_feed_udp_frames", {})
    assert counter_metric("feed.counters.notice_overflow") == (
        "tickwire_feed_notice_overflow", {})
    assert counter_metric("feed.counters.itch.type_S") == (
        "tickwire_feed_itch_messages", {"type": "S"})
    assert counter_metric("feed.counters.itch.type_h_lower") == (
        "tickwire_feed_itch_messages", {"type": "h"})
    assert len({counter_key(name) for name in COUNTERS}) == len(COUNTERS)   # no collisions


def test_every_counter_alarm_and_status_with_the_values_the_driver_reads(tmp_path):
    path = bar_image(tmp_path / "resource0")

    async def work():
        bar = PcieBar(path)
        try:
            device = await Device.open(bar)
            exporter = Exporter(device)
            await exporter.refresh()
            registry = CollectorRegistry(auto_describe=True)
            registry.register(exporter)
            text = generate_latest(registry).decode()
            with serve(device, 0, exporter=exporter) as server:
                assert server.address == "127.0.0.1" and server.port > 0
                scraped = await asyncio.to_thread(scrape, server.url)
            return (text, scraped, await device.counters(), await device.status(),
                    device.identity)
        finally:
            bar.close()

    text, scraped, counters, status, identity = asyncio.run(work())
    assert set(counters) == set(COUNTERS)
    assert status["status"]["feed.alarms"] == {"integrity": 0, "gap": 1, "overflow": 0}
    for exposition in (text, scraped):
        values = check_exposition(exposition, counters, status["status"], identity)
        assert values["tickwire_feed_udp_frames_total", ()] == counters[
            "feed.counters.udp.frames"] == 1000
        assert values["tickwire_feed_next_sequence", (("feed", "3"),)] == 1 << 40
        assert values["tickwire_samples_total", ()] == 1
    assert samples(text)[0].keys() == samples(scraped)[0].keys()


class CountingBar(PcieBar):
    reads = 0

    async def read_word(self, address):
        self.reads += 1
        return await super().read_word(address)


def test_a_scrape_serves_the_latest_sample_and_never_touches_the_device(tmp_path):
    path = bar_image(tmp_path / "resource0")

    async def work():
        bar = CountingBar(path)
        try:
            device = await Device.open(bar)
            with serve(device, 0) as server:
                before_any_sample, _ = samples(await asyncio.to_thread(scrape, server.url))
                await server.exporter.refresh()
                bar_image(path, counters={"feed.counters.udp.frames": 5}, alarms=0b101)
                reads = bar.reads
                first, _ = samples(await asyncio.to_thread(scrape, server.url))
                again, _ = samples(await asyncio.to_thread(scrape, server.url))
                assert bar.reads == reads        # scrapes read the sample, not the device
                await server.exporter.refresh()
                second, _ = samples(await asyncio.to_thread(scrape, server.url))
            return before_any_sample, first, again, second
        finally:
            bar.close()

    before_any_sample, first, again, second = asyncio.run(work())
    assert before_any_sample[("tickwire_samples_total", ())] == 0
    assert not any(name.startswith("tickwire_feed") for name, _ in before_any_sample)
    assert first == again and first["tickwire_feed_udp_frames_total", ()] == 1000
    assert second["tickwire_feed_udp_frames_total", ()] == 5
    assert second["tickwire_feed_udp_accepted_total", ()] == 0
    assert [second["tickwire_feed_alarms", (("alarm", a),)] for a in ALARMS] == [1, 0, 1]
    assert second["tickwire_samples_total", ()] == 2


def test_the_simulated_nic_after_a_replay():
    async def work():
        device = await connect("sim")
        await replay_default_scenario(device, 300)
        with serve(device, 0) as server:
            await server.exporter.refresh()
            scraped = await asyncio.to_thread(scrape, server.url)
        return scraped, await device.counters(), await device.status(), device.identity

    scraped, counters, status, identity = asyncio.run(work())
    values = check_exposition(scraped, counters, status["status"], identity)
    assert values["tickwire_feed_mold_messages_total", ()] > 0
    assert values["tickwire_feed_itch_messages_total", (("type", "A"),)] > 0
    assert values["tickwire_feed_next_sequence", (("feed", "0"),)] == 301


def watch(*arguments):
    return subprocess.Popen(TICKWIRE + ["watch", "--count", "1", "--interval", "0", "--json",
                                        *arguments],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_watch_serves_its_last_sample_until_scraped_then_exits(tmp_path):
    path = bar_image(tmp_path / "resource0", alarms=0b001)
    process = watch("--device", f"pcie:{path}", "--prometheus", "0")
    try:
        lines = []
        for _ in range(20):              # alarm log lines may come first
            lines.append(process.stderr.readline())
            if lines[-1].startswith("prometheus exporter on ") or not lines[-1]:
                break
        assert lines[-1].startswith("prometheus exporter on http://127.0.0.1:"), lines
        text = scrape(lines[-1].split()[-1])
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    sample = json.loads(stdout)
    check_exposition(text, sample["counters"], sample["status"], int(sample["identity"], 16))
    assert sample["status"]["feed.alarms"]["integrity"] == 1


def test_watch_without_a_scrape_and_on_a_busy_port(tmp_path):
    path = bar_image(tmp_path / "resource0")
    process = watch("--device", f"pcie:{path}", "--prometheus", "0", "--prometheus-linger", "0")
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "prometheus exporter on" in stderr and json.loads(stdout)["counters"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        process = watch("--device", f"pcie:{path}", "--prometheus", str(busy.getsockname()[1]))
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1 and "error" in stderr and "in use" in stderr


@pytest.mark.parametrize("command", [["watch", "--help"]])
def test_help_names_the_options(command):
    result = subprocess.run(TICKWIRE + command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--prometheus PORT" in result.stdout and "--prometheus-addr" in result.stdout


def test_two_registers_exporting_one_name_are_refused():
    from types import SimpleNamespace

    from tickwire.hdl.platform.registers import Register

    clash = [Register("feed.counters.udp.frames", "counter", "ro", 0, 32),
             Register("feed.udp.counters.frames", "counter", "ro", 1, 32)]
    with pytest.raises(ValueError, match="feed.udp.counters.frames and feed.counters.udp.frames"):
        Exporter(SimpleNamespace(map=clash))
    # A status register named like a counter of its block is exported with a suffix.
    beside = [Register("risk.counters.killed", "counter", "ro", 0, 32),
              Register("risk.killed", "status", "ro", 1, 1)]
    names = [family[0] for family in Exporter(SimpleNamespace(map=beside))._families]
    assert names == ["tickwire_risk_killed", "tickwire_risk_killed_state"]


def test_the_order_latency_histogram_is_a_prometheus_histogram(tmp_path):
    path = tmp_path / "resource0"
    bar_image(path)
    data = path.read_bytes()
    words = [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]
    put(words, "order.histogram_bins", 12 | 2 << 32)                  # base 12, bins of 4
    put(words, "order.latency", 9 | 4321 << 96)                       # count 9, sum 4321
    path.write_bytes(b"".join(w.to_bytes(4, "little") for w in words))
    bins = [r.name for r in REGS if r.name.startswith("order.histogram.") and r.kind == "counter"]

    async def work():
        bar = PcieBar(path)
        try:
            device = await Device.open(bar)
            with serve(device, 0) as server:
                await server.exporter.refresh()
                return await asyncio.to_thread(scrape, server.url), await device.counters()
        finally:
            bar.close()

    text, counters = asyncio.run(work())
    values, families = samples(text)
    assert families["tickwire_order_latency_cycles"][0] == "histogram"
    # Bin k of the gateware counts 12 + 4k <= latency < 12 + 4(k + 1): whole cycles, so the
    # bucket "le" is the bin's last value; "below" is le 11, "above" only in +Inf.
    counts = [counters[name] for name in bins]
    assert len(counts) == 18
    edges = [str(float(11 + 4 * k)) for k in range(17)] + ["+Inf"]
    for k, edge in enumerate(edges):
        key = ("tickwire_order_latency_cycles_bucket", (("le", edge),))
        assert values[key] == sum(counts[:k + 1]), edge
    assert values["tickwire_order_latency_cycles_count", ()] == sum(counts)
    assert values["tickwire_order_latency_cycles_sum", ()] == 4321
