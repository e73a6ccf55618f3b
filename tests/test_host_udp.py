"""The UDP control channel: its wire format, the host transport, the board's rules in the
reference model (`tickwire.sim.nic_control.ControlEndpoint`), and the gateware end to end: the
host transport, driver and CLI over a real UDP socket to the simulated NIC, whose MAC rx takes
each datagram as a frame and whose `ControlResponder` answers at MAC tx (`GatewareEndpoint`)."""

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickwire.host.api import load_filters, replay
from tickwire.host.device import Device
from tickwire.host.transports import SimTransport
from tickwire.host.udp_control import (
    MAX_OPERATIONS,
    READ,
    REPLY,
    WRITE,
    FormatError,
    Operation,
    UdpControl,
    decode,
    encode,
)
from tickwire.sim.nic import shared_nic
from tickwire.sim.nic_control import ControlEndpoint, ControlServer, GatewareEndpoint
from tickwire.sim.scenario import ab_frames, default_filters, order_flow

TICKWIRE = [str(Path(sys.executable).parent / "tickwire")]
TOKEN = bytes(range(16))
HOST = "127.0.0.1"


class Bus:
    """A register bus that remembers every access."""

    def __init__(self):
        self.words, self.log = {}, []

    def read_word(self, address):
        self.log.append(("read", address))
        return self.words.get(address, 0)

    def write_word(self, address, value):
        self.log.append(("write", address, value))
        self.words[address] = value


operation = st.builds(Operation, st.sampled_from([READ, WRITE]), st.integers(0, (1 << 24) - 1),
                      st.integers(0, (1 << 32) - 1))


@given(st.integers(0, (1 << 64) - 1), st.lists(operation, min_size=1, max_size=MAX_OPERATIONS),
       st.binary(min_size=16, max_size=16))
def test_requests_round_trip(request_id, operations, token):
    assert decode(encode(request_id, operations, token)) == (request_id, token, operations)


@given(st.binary(max_size=100))
def test_garbage_is_malformed_and_dropped(payload):
    endpoint = ControlEndpoint(Bus(), TOKEN, HOST)
    try:
        decode(payload)
    except FormatError:
        assert endpoint.handle(payload, HOST) is None
        assert endpoint.counters["malformed"] == 1 and endpoint.bus.log == []


def test_board_rules_source_token_replay_and_retransmission():
    bus = Bus()
    endpoint = ControlEndpoint(bus, TOKEN, HOST)
    write = encode(10, [Operation(WRITE, 5, 99), Operation(READ, 5)], TOKEN)
    assert endpoint.handle(write, "10.0.0.66") is None                     # wrong source
    assert endpoint.handle(encode(10, [Operation(WRITE, 5, 1)], bytes(16)), HOST) is None
    assert bus.log == []
    reply = endpoint.handle(write, HOST)
    assert decode(reply)[2] == [Operation(WRITE | REPLY, 5, 99), Operation(READ | REPLY, 5, 99)]
    assert endpoint.handle(write, HOST) == reply                           # retransmission
    assert endpoint.handle(encode(9, [Operation(WRITE, 5, 7)], TOKEN), HOST) is None  # stale
    assert endpoint.handle(encode(1, [Operation(READ, 5)], TOKEN), HOST) is None
    assert bus.log == [("write", 5, 99), ("read", 5)]                     # ran once
    assert endpoint.counters == {"accepted": 1, "retransmitted": 1, "malformed": 0,
                                 "wrong_source": 1, "bad_token": 1, "replayed": 2}
    bad_op = bytearray(encode(11, [Operation(READ, 5)], TOKEN))
    bad_op[28] = 7
    assert endpoint.handle(bytes(bad_op), HOST) is None and endpoint.counters["malformed"] == 1


@pytest.fixture(scope="module")
def nic():
    return shared_nic()


def board_with_token(nic):
    """Reset the NIC and load the test token through the host port (the build's is zeros)."""
    nic.reset()
    device = Device(SimTransport(nic), nic.register_map)
    asyncio.run(device.write("control.token", int.from_bytes(TOKEN, "big")))
    return GatewareEndpoint(nic)


def control_counters(nic):
    device = Device(SimTransport(nic), nic.register_map)
    counters = asyncio.run(device.counters("control"))
    return {name.removeprefix("control.counters."): value for name, value in counters.items()}


def test_driver_over_udp_to_a_simulated_nic(nic):
    endpoint = board_with_token(nic)
    frames = ab_frames(b"20261122A1", order_flow(200, seed=9), seed=9, loss=(0.05, 0.05))

    async def work():
        direct = await Device.open(SimTransport(nic))
        await load_filters(direct, default_filters())
        await replay(direct, frames)
        expected = await direct.status()
        with ControlServer(endpoint, drop_replies=3) as server:   # lost replies: retransmitted
            udp = UdpControl(HOST, server.port, TOKEN, timeout=0.1)
            try:
                device = await Device.open(udp)
                got = await device.status()
                await device.write("feed.filters", {"enable": 0}, index=1)
                notices = await device.drain("feed.notices")
            finally:
                udp.close()
        return expected, got, notices, await direct.read("feed.filters", 1)

    expected, got, notices, entry = asyncio.run(work())
    for sample in (expected, got):     # the free-running cycle counter moves between reads
        assert sample["status"].pop("clock.now") > 0
    # The control requests are frames at rx too: the feed handler counts them as UDP frames
    # matching no feed filter, the responder as accepted or retransmitted; nothing else moves.
    counters_before_udp = expected["counters"]
    moved = {name for name, value in got["counters"].items()
             if expected["counters"][name] != value}
    assert moved == {"feed.counters.udp.frames", "feed.counters.udp.unmatched",
                     "control.counters.accepted", "control.counters.retransmitted"}, moved
    got.pop("counters"), expected.pop("counters")
    assert got == expected
    assert counters_before_udp["feed.counters.udp.accepted"] > 0
    assert len(notices) > 0 and entry["enable"] == 0
    # At least the 3 lost replies were retransmitted from the saved reply (a slow machine may
    # time out more often), and no FIFO pop ran twice: the notices drained are all distinct.
    counters = control_counters(nic)
    assert counters["retransmitted"] >= 3 and counters["replayed"] == 0
    assert counters["accepted"] > 0 and counters["bad_token"] == counters["malformed"] == 0
    assert len({tuple(sorted(n.items())) for n in notices}) == len(notices)


def test_a_wrong_token_gets_no_answer_and_writes_nothing(nic):
    endpoint = board_with_token(nic)

    async def work():
        with ControlServer(endpoint) as server:
            udp = UdpControl(HOST, server.port, bytes(16), timeout=0.05, retries=2)
            try:
                await udp.write_word(nic.register_map["feed.filters"].entry_address(0) + 1,
                                     1 << 20)
            finally:
                udp.close()

    with pytest.raises(TimeoutError, match="wrong token"):
        asyncio.run(work())
    counters = control_counters(nic)
    assert counters["bad_token"] >= 1 and counters["accepted"] == 0
    assert asyncio.run(Device(SimTransport(nic), nic.register_map).read("feed.filters", 0)) == \
        dict.fromkeys(("group", "port", "feed", "line", "enable"), 0)


def test_a_captured_request_replayed_by_an_attacker_is_dropped(nic):
    endpoint = board_with_token(nic)
    address = nic.register_map["feed.resync"].address
    with ControlServer(endpoint) as server:
        attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        attacker.settimeout(10)
        captured = encode(1000, [Operation(WRITE, address, 1)], TOKEN)
        attacker.sendto(captured, (HOST, server.port))
        attacker.recvfrom(2048)                                     # accepted once
        newer = encode(1001, [Operation(READ, 0)], TOKEN)
        attacker.sendto(newer, (HOST, server.port))
        attacker.recvfrom(2048)
        attacker.settimeout(0.5)
        attacker.sendto(captured, (HOST, server.port))              # replay: no answer
        with pytest.raises(TimeoutError):
            attacker.recvfrom(2048)
        attacker.settimeout(10)
        attacker.sendto(encode(1002, [Operation(READ, 0)], TOKEN), (HOST, server.port))
        assert decode(attacker.recvfrom(2048)[0])[0] == 1002      # served after the replay
        attacker.close()
    counters = control_counters(nic)
    assert counters["accepted"] == 3 and counters["replayed"] == 1


def test_cli_status_over_udp(nic):
    endpoint = board_with_token(nic)
    with ControlServer(endpoint) as server:
        device = f"udp://{HOST}:{server.port}"
        env = dict(os.environ, TICKWIRE_CONTROL_TOKEN=TOKEN.hex())
        result = subprocess.run(TICKWIRE + ["status", "--device", device, "--json",
                                            "--identity", f"{nic.identity:016x}"],
                                capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["status"]["feed.next_sequence"] == [1, 1, 1, 1]
        env["TICKWIRE_CONTROL_TOKEN"] = "00" * 16
        result = subprocess.run(TICKWIRE + ["status", "--device", device], capture_output=True,
                                text=True, env=env, timeout=120)
        assert result.returncode == 1 and "no reply" in result.stderr


def test_strangers_and_malformed_requests_are_dropped_counted_and_write_nothing(nic):
    endpoint = board_with_token(nic)
    address = nic.register_map["feed.filters"].entry_address(0) + 1
    write = [Operation(WRITE, address, 1 << 20)]
    with ControlServer(endpoint) as server:
        target = (HOST, server.port)
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.bind(("127.0.0.2", 0))               # right token, wrong source address
        stranger.settimeout(0.5)
        stranger.sendto(encode(5000, write, TOKEN), target)
        with pytest.raises(TimeoutError):
            stranger.recvfrom(2048)
        stranger.close()
        host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        host.settimeout(0.5)
        count_beyond_payload = bytearray(encode(5001, write, TOKEN))
        count_beyond_payload[3] = 2
        for garbage in (b"TW\x01", bytes(count_beyond_payload)):
            host.sendto(garbage, target)
            with pytest.raises(TimeoutError):
                host.recvfrom(2048)
        host.settimeout(10)
        host.sendto(encode(5002, [Operation(READ, address)], TOKEN), target)
        _, _, records = decode(host.recvfrom(2048)[0])
        host.close()
    assert records == [Operation(READ | REPLY, address, 0)]      # nothing was written
    counters = control_counters(nic)
    assert (counters["wrong_source"], counters["malformed"], counters["accepted"]) == (1, 2, 1)


def test_the_host_port_waits_while_a_control_request_holds_the_bus(nic):
    from tickwire.sim.frames import udp_frame
    from tickwire.sim.nic_control import control_reply_payload

    board_with_token(nic)
    board = nic.control_defaults
    bins = nic.register_map["order.histogram_bins"].address       # 36 bits: two words,
    operations = []                                                # committed by the second
    for k in range(12):
        operations += [Operation(WRITE, bins, 0x1000 + k), Operation(WRITE, bins + 1, k & 15),
                       Operation(READ, bins), Operation(READ, bins + 1)]
    frame = udp_frame(encode(7, operations, TOKEN), dst_ip=board.ip, dst_port=board.port,
                      src_ip=board.host_ip, dst_mac=board.mac.to_bytes(6, "big"))
    direct = Device(SimTransport(nic), nic.register_map)
    now = nic.register_map["clock.now"].address
    seen = len(nic.sent)
    nic.send(frame)
    # Host-port reads of the 64-bit cycle counter (two words, latched by the first) while the
    # request arrives and runs: each access waits for the bus to be free, so neither side's
    # wide values tear.
    busy_seen, stamps = 0, []
    while not any(control_reply_payload(f, board) for f, _ in nic.sent[seen:]):
        busy_seen += nic._get("bus_busy")
        stamps.append(asyncio.run(direct.read("clock.now")))
    assert busy_seen > 0 and stamps == sorted(stamps)
    (reply,) = [p for f, _ in nic.sent[seen:] if (p := control_reply_payload(f, board))]
    _, _, records = decode(reply)
    assert [r.data for r in records] == [v for k in range(12)
                                         for v in (0x1000 + k, k & 15, 0x1000 + k, k & 15)]
    # An access made while the bus is held anyway is dropped and counted, never mixed in.
    nic.send(udp_frame(encode(8, [Operation(READ, now)] * 64, TOKEN), dst_ip=board.ip,
                       dst_port=board.port, src_ip=board.host_ip,
                       dst_mac=board.mac.to_bytes(6, "big")))
    while not nic._get("bus_busy"):
        nic.tick()
    nic._set("bus__addr", bins + 1)
    nic._set("bus__w_data", 0xBAD)
    nic._set("bus__w_stb", 1)
    nic.tick()
    nic._set("bus__w_stb", 0)
    nic.run(drain_cycles=200)
    assert asyncio.run(direct.read("bus.counters.refused")) == 1
    assert asyncio.run(direct.read("order.histogram_bins")) == {"base": 0x1000 + 11, "shift": 11}


def test_tickwire_serve_then_status_over_udp_from_another_process():
    """The README's walk-through: `tickwire serve` in one process, `tickwire status` over
    udp:// in another; the status comes from the served device's gateware."""
    with subprocess.Popen(TICKWIRE + ["serve", "--port", "0", "--seconds", "300",
                                      "--token", TOKEN.hex()],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as serve:
        try:
            line = serve.stdout.readline()
            assert line.startswith("serving"), line
            words = line.split()
            device, identity = words[7], words[-1].rstrip(")")
            env = dict(os.environ, TICKWIRE_CONTROL_TOKEN=TOKEN.hex())
            result = subprocess.run(TICKWIRE + ["status", "--device", device, "--json"],
                                    capture_output=True, text=True, env=env, timeout=300)
            assert result.returncode == 0, result.stderr
            report = json.loads(result.stdout)
            assert report["identity"] == identity
            assert report["counters"]["control.counters.accepted"] > 0
        finally:
            serve.terminate()


def test_serve_refuses_a_bad_token():
    result = subprocess.run(TICKWIRE + ["serve", "--token", "00" * 16, "--seconds", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "not all zero" in result.stderr
