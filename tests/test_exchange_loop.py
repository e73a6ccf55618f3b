"""The exchange as the closed loop drives it: the scenario's flow applied message by message
while orders arrive over the SoupBinTCP port from another thread, the feed assembled from what
`apply_market` returns and what `published` adds, and the re-request server answering from
that feed. The feed alone (decoded by itchfeed) must rebuild the exchange's books, and every
execution reported over OUCH must be in the feed under the same match number."""

import socket

from itch.messages import messages as itchfeed
from test_exchange_matching import replay

from tickwire.sim import moldudp64 as mold
from tickwire.sim.exchange import (
    EventKind,
    Exchange,
    OrderEntryServer,
    RerequestServer,
    serve_in_thread,
)
from tickwire.sim.ouch import encode_enter_order, soupbin_unsequenced
from tickwire.sim.scenario import DEFAULT_SYMBOLS, order_flow

SESSION, FEED_SESSION = "TWIRE00001", b"20261122A1"


def read_packets(sock, buffer):
    """Complete SoupBinTCP packets from one recv (none once the server closed), and the bytes
    left over."""
    data = sock.recv(65536)
    if not data:
        return None, buffer
    buffer += data
    packets = []
    while len(buffer) >= 2 and len(buffer) >= 2 + int.from_bytes(buffer[0:2], "big"):
        length = int.from_bytes(buffer[0:2], "big")
        packets.append((buffer[2:3], buffer[3:2 + length]))
        buffer = buffer[2 + length:]
    return packets, buffer


def test_closed_loop():
    flow = order_flow(4000, seed=11)
    exchange = Exchange(DEFAULT_SYMBOLS)
    server = OrderEntryServer(exchange, session=SESSION, username="tw", password="secret")
    feed = []
    rerequest = RerequestServer(FEED_SESSION, feed)
    outbound, number = [], 0
    with serve_in_thread(server, rerequest), socket.create_connection(
            (server.host, server.port), timeout=5) as sock:
        sock.sendall(b"\x00\x2fL" + b"tw    secret    " + b" " * 10 + b"1".rjust(20))
        buffer = b""
        for index, message in enumerate(flow):
            feed.extend(exchange.published())
            feed.extend(exchange.apply_market(message))
            if index % 150 != 149:
                continue
            # Now and then an IOC buy through the best offer of some symbol, or a Day sell
            # that may rest and be hit later by the flow.
            symbol = DEFAULT_SYMBOLS[index // 150 % len(DEFAULT_SYMBOLS)]
            asks = [o for o in exchange.resting(symbol) if o.side == "S"]
            if not asks:
                continue
            number += 1
            side, tif, price = (("B", "3", asks[0].price + 100) if number % 2
                                else ("S", "0", asks[0].price - 200))
            sock.sendall(soupbin_unsequenced(encode_enter_order(
                user_ref_num=number, side=side, quantity=700, symbol=symbol, price=price,
                time_in_force=tif, display="Y", capacity="P", intermarket_sweep="N",
                cross_type="N", clordid=f"LOOP{number}")))
            # Wait for the order's answer (Accepted, then its fills or cancel) to be sent.
            while not any(p[0] == b"S" and p[1][0:1] == b"A"
                          and int.from_bytes(p[1][9:13], "big") == number
                          for p in outbound):
                packets, buffer = read_packets(sock, buffer)
                outbound += packets
        feed.extend(exchange.published())
        sock.sendall(b"\x00\x01O")                  # logout: the server closes
        while (packets := read_packets(sock, buffer))[0] is not None:
            outbound += packets[0]
            buffer = packets[1]
        assert packets[1] == b""
        answer = mold.decode_packet(_ask(rerequest, mold.request(FEED_SESSION, 2001, 30)))
    assert list(answer.messages) == feed[2000:2030]
    assert server.counters["bad_ouch"] == 0 and number > 20
    # The feed rebuilds every book the exchange holds.
    assert replay(feed) == {o.ref: (o.side, o.price, o.shares)
                            for symbol in DEFAULT_SYMBOLS for o in exchange.resting(symbol)}
    # Each OUCH execution has its ITCH execution (same match number and shares) in the feed.
    sequenced = [payload for kind, payload in outbound if kind == b"S"]
    assert sequenced == exchange.stream(SESSION)
    fills = {int.from_bytes(m[26:34], "big"): int.from_bytes(m[13:17], "big")
             for m in sequenced if m[0:1] == b"E"}
    in_feed = {}
    for message in feed:
        if message[0:1] == b"E":
            parsed = itchfeed[b"E"](message)
            in_feed.setdefault(parsed.match_number, set()).add(parsed.executed_shares)
    assert fills and all(in_feed.get(match) == {shares} for match, shares in fills.items())
    # One OrderEvent per OUCH order message (all but the System Event).
    assert len(exchange.events) == len(sequenced) - 1
    assert sum(e.kind is EventKind.EXECUTED for e in exchange.events) == len(fills)


def _ask(server, request):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.sendto(request, (server.host, server.port))
        return sock.recv(2048)


def test_bench_runs(capsys):
    from tickwire.sim.exchange import bench
    bench.main(messages=500, orders=20)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("apply_market: 500 messages") and "20 IOC orders" in out[1]
