"""Figures for the simulated exchange: `python -m tickwire.sim.exchange.bench`.

- the market flow: ITCH messages per second through `Exchange.apply_market` (default scenario);
- order round trip over loopback TCP: Enter Order (IOC buy at $0.01, which crosses nothing)
  written by a plain socket client to the Canceled it gets back after the Accepted, one
  order at a time.
"""

import socket
import statistics
import time

from tickwire.sim.ouch import encode_enter_order, soupbin_unsequenced
from tickwire.sim.scenario import DEFAULT_SYMBOLS, order_flow

from .exchange import Exchange
from .server import OrderEntryServer, serve_in_thread


def main(messages=20_000, orders=2_000):
    flow = order_flow(messages, seed=2026)
    exchange = Exchange(DEFAULT_SYMBOLS)
    start = time.perf_counter()
    for message in flow:
        exchange.apply_market(message)
    elapsed = time.perf_counter() - start
    print(f"apply_market: {messages} messages in {elapsed:.3f} s "
          f"({messages / elapsed:,.0f} messages/s)")
    server = OrderEntryServer(exchange)
    trips = []
    with serve_in_thread(server), socket.create_connection((server.host, server.port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"\x00\x2fL" + b"tw    secret    " + b" " * 10 + b"0".rjust(20))
        buffer = _until(sock, b"", b"A")
        for number in range(1, orders + 1):
            order = soupbin_unsequenced(encode_enter_order(
                user_ref_num=number, side="B", quantity=100, symbol="AAPL", price=100,
                time_in_force="3", display="Y", capacity="P", intermarket_sweep="N",
                cross_type="N", clordid=f"B{number}"))
            sent = time.perf_counter()
            sock.sendall(order)
            buffer = _until(sock, buffer, b"S", ouch=b"C")
            trips.append(time.perf_counter() - sent)
    trips = sorted(t * 1e6 for t in trips)
    print(f"order round trip (Enter Order to Canceled, {orders} IOC orders over loopback): "
          f"min {trips[0]:.0f} us, median {statistics.median(trips):.0f} us, "
          f"p99 {trips[int(len(trips) * 0.99)]:.0f} us, max {trips[-1]:.0f} us")


def _until(sock, buffer, kind, ouch=None):
    """Read packets until one of `kind` (carrying an OUCH message of type `ouch`, if given);
    returns the bytes after it."""
    while True:
        while len(buffer) >= 2 and len(buffer) >= 2 + int.from_bytes(buffer[0:2], "big"):
            length = int.from_bytes(buffer[0:2], "big")
            packet, buffer = buffer[2:2 + length], buffer[2 + length:]
            if packet[0:1] == kind and (ouch is None or packet[1:2] == ouch):
                return buffer
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        buffer += data


if __name__ == "__main__":
    main()
