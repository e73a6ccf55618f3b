"""The closed loop: the simulated exchange, its feed, the Verilated tick-to-trade device, the
host's order session, the exchange's OUCH replies and the host's positions, end to end.

    result = run_closed_loop(messages=20_000, seed=2026)
    result.summary()          # JSON-able figures: orders, fills, rejects, P&L, latency

The exchange applies the scenario's flow message by message (`Exchange.apply_market`, after
what our orders did: `Exchange.published`); as soon as the next message might not fit in the
MoldUDP64 packet being filled, that packet is published on lines A and B
(`scenario.ab_frames`, sequence numbers continuing the session) and presented to the Verilated
`TickToTrade` (`VerilatedTop`, clocked by its C++ harness, one batch per packet), followed by
`QUIET_CYCLES` idle cycles, longer than the tick-to-trade path. If the device sent order
frames, the host, through its own driver, drains the order log and the risk gate's rejects
before the exchange applies another message, so each order meets the book of the packet that
triggered it, as on a real wire where the order arrives after the packet it reacts to. Every
`chunk` scenario messages (a round) the host also keeps its session and marks positions.
Each order frame the device sent is compared byte for byte with the
frame the independent encoder model (`tickwire.sim.ouch.order_frame`) builds from its log entry
and the host's TCP state, and its TCP payload (SoupBinTCP ``U`` + OUCH Enter Order) is carried
on the host's real TCP connection to the exchange's order-entry server (`OrderSession`). The
host waits for the exchange's answers (OUCH Accepted / Executed / Canceled / Rejected), keeps
positions and P&L from them (`tickwire.host.positions`), tells the risk gate what filled and
what was released (``risk.fill``), loads the acknowledgement number it now sends with, and
sends a SoupBinTCP heartbeat (with ``order.hold`` set, then the new sequence number loaded)
after a second of idle. The exchange's executions are in the next packet. Beside the
order session runs the FIX 4.4 drop copy (`tickwire.sim.dropcopy` to `tickwire.host.dropcopy`,
QuickFIX at both ends); at the end the host reconciles the order log, the OUCH replies and the
drop copy (`tickwire.host.reconcile`). Positions are kept from OUCH (the fast path, which the
risk gate's position check needs) and, for comparison, from the drop copy alone.

Gap recovery: the feed handler's recovery bit is set, so a message lost on both lines holds
the feed (nothing later is delivered) and raises a GAP notice; after each packet the host reads
``feed.next_sequence`` and ``feed.recover_to``, sends MoldUDP64 re-requests over UDP to the
exchange's `RerequestServer` and presents each answer at MAC rx as the unicast UDP frame a NIC
would receive, until the feed has caught up; then the live lines are delivered again. Nothing
is lost and nothing is delivered twice (``gap_messages`` 0, ``feed.counters.mold.messages`` =
the feed's length), and at the end the gateware's books are compared, level by level, with the
exchange's (`LoopResult.book_mismatches`; not comparable once the gateware's order table has
refused adds, ``book.counters.table_full``: `SIM_PARAMETERS` hold 65,536 orders; the test
build's 2,048, which tests pass explicitly, a session of about 6,000 messages outgrows).

``lags`` counts, per order, the feed messages the exchange had published after its trigger
when the order reached it: the rest of the trigger's packet.
"""

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import json
import socket
import struct
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from amaranth.lib import data

from tickwire.hdl.book.records import level_layout
from tickwire.hdl.feed.events import NoticeKind
from tickwire.hdl.order import formats as order_formats
from tickwire.host import api
from tickwire.host.config import parse_documents
from tickwire.host.device import Device
from tickwire.host.dropcopy import DropCopyClient, ExecutionReport
from tickwire.host.order_session import OrderSession
from tickwire.host.positions import Positions
from tickwire.host.reconcile import reconcile
from tickwire.host.store import ExecutionStore

from . import moldudp64 as mold
from .dropcopy import DropCopyAcceptor
from .exchange import Exchange, OrderEntryServer, RerequestServer, serve_in_thread
from .feed_model import FilterEntry
from .feed_run import Frame
from .frames import ip, udp_frame
from .ouch import Template, order_frame
from .records import unpack
from .scenario import DEFAULT_SYMBOLS, ab_frames, default_filters, order_flow
from .t2t_bench import first_prices, order_section
from .t2t_run import TEST_BOOK, VerilatedTop, message_arrivals

__all__ = ["CLOCK_MHZ", "LoopError", "LoopResult", "check_acknowledged", "closed_loop_figures",
           "default_configuration", "run_closed_loop", "write_pcap", "write_report"]

class LoopError(RuntimeError):
    """The gateware, the host and the exchange disagree (an order frame, the order log, the
    session's replies)."""


#: The target clock (the design's timing goal) for converting cycles to ns.
CLOCK_MHZ = 156.25
FEED_SESSION = b"20261122A1"
ORDER_SESSION, USERNAME, PASSWORD = "TWIRE00001", "tw", "secret"
LOCALHOST = 0x7F_00_00_01
CHUNK = 250
MAX_PAYLOAD = 1400                  # MoldUDP64 payload bytes per packet (`scenario.ab_frames`)
MAX_ITCH_LENGTH = 50                # no ITCH 5.0 message is longer
#: Idle cycles after each packet: longer than the tick-to-trade path (23 cycles at most in the
#: default scenario), so an order a packet triggers leaves before the next packet.
QUIET_CYCLES = 48


def _payload(messages):
    return mold.HEADER_LENGTH + sum(2 + len(m) for m in messages)
#: Where the re-request server's answers come from and go to (our unicast address and port).
REREQUEST_SOURCE = ip("206.200.131.10")
RECOVERY_IP, RECOVERY_PORT = ip("10.26.11.22"), 26_478


def loop_filters():
    """Lines A and B of the scenario's feed, and the unicast address the re-request server
    answers (the same feed: a retransmission is delivered like a live packet)."""
    return [*default_filters(), FilterEntry(RECOVERY_IP, RECOVERY_PORT, 0, 0)]


def default_configuration(flow, *, band=0.10, quantity=100, position_limit=500):
    """TOML for the host's parser: a threshold taker on each scenario symbol that buys (IOC,
    at the best ask) when the ask falls `band` dollars below the symbol's first price, and
    sells at the bid when the bid rises `band` above it; real risk limits (the position limit
    binds in the default scenario); the order session's identity (`ORDER_SECTION`)."""
    prices, lines = first_prices(flow), []
    for locate, name in enumerate(DEFAULT_SYMBOLS, start=1):
        if locate not in prices:
            continue
        price = prices[locate] / 10_000
        lines += ["[[symbol]]", f'name = "{name}"', f"locate = {locate}", "",
                  "[[strategy.taker]]", f'symbol = "{name}"',
                  f"buy_at_or_below = {max(0.0001, price - band):.4f}",
                  f"sell_at_or_above = {price + band:.4f}", f"quantity = {quantity}", ""]
    lines += ["[risk]", "slot_throttle = { interval_cycles = 1563, burst = 4 }",
              "global_throttle = { interval_cycles = 156, burst = 16 }",
              "auto_kill = { rejects = 65535, window_cycles = 1 }", "",
              "[risk.default]", "max_quantity = 500", "max_notional = 500000",
              "collar_bps = 50", f"position_limit = {position_limit}", ""]
    return "\n".join(lines) + "\n" + ORDER_SECTION


#: The order session's identity when the configuration gives none (addresses and ports are
#: replaced by the live connection's).
ORDER_SECTION = order_section("TWSIM1", src_ip="127.0.0.1", dst_ip="127.0.0.1")


@dataclasses.dataclass
class LoopResult:
    """Everything the loop saw. `log`: the order log entries (dicts of `OrderLogEntry`);
    `order_frames`: the device's tx frames (`SentFrame`), one per sent entry; `replies`: the
    host's sequenced OUCH messages (`decode_outbound` dicts); `events`: the exchange's own
    `OrderEvent`s; `latencies`: actionable latency in cycles per sent order (last byte of the
    trigger at rx to the order's first byte at tx); `pnl_series`: (exchange ns, total P&L)
    after each round, open positions marked to the exchange's mid (`marks`: the last mids)."""
    messages: int
    feed: list
    feed_frames: list
    feed_starts: list           # the cycle each feed frame's first beat was at rx
    packets: int
    log: list
    order_frames: list
    replies: list
    events: list
    risk_rejects: list
    latencies: list
    hardware_latencies: list
    lags: list                  # per order: feed messages the exchange had published after
                                # its trigger when the order reached it (the rest of its packet)
    positions: Positions
    marks: dict
    bbo: dict                   # symbol -> [(exchange ns, best bid, best ask)] after each round
    pnl_series: list
    counters: dict
    exchange_counters: dict
    server_counters: dict
    session: dict
    symbols: dict               # slot -> symbol name
    clordid_prefix: str
    seconds: dict               # wall time by stage (scenario generation excluded)
    cycles: int                 # simulated cycles
    chunk: int
    problems: list              # check_acknowledged's findings
    reports: list | None        # the drop copy's ExecutionReports, as the host stored them
    reconciliation: object      # `tickwire.host.reconcile.Reconciliation` (with the drop copy)
    gaps: int                   # feed messages the gateware never delivered
    recovery: dict              # GAP notices, re-requests, messages re-sent, held packets
    book_mismatches: list | None    # (symbol, side, gateware levels, exchange levels) at the
                                    # end; None when the order table refused adds (not comparable)

    def _reconciliation(self):
        if self.reconciliation is None:
            return None
        r = self.reconciliation
        return {"ok": r.ok, "orders": r.orders, "matched": r.matched,
                "ouch_messages": r.ouch_messages, "drop_copy_reports": r.reports,
                "alarms": r.counts(),
                "first_alarms": [f"{a.kind} {a.user_ref_num}: {a.detail}" for a in r.alarms[:10]],
                "drop_copy_pnl": str(_drop_copy_pnl(self.reports, self.marks))}

    def orders(self):
        return [e for e in self.log if e["sent"]]

    def summary(self):
        kinds = collections.Counter(r["type"] for r in self.replies)
        reject_reasons = collections.Counter(f"0x{r['reason']:04X}" for r in self.replies
                                 if r["type"] == "J")
        risk = {k.removeprefix("risk.counters."): v for k, v in self.counters.items()
                if k.startswith("risk.counters.") and v
                and k.split(".")[-1] not in ("intents", "passes")}
        total = self.positions.pnl()
        wall = sum(self.seconds.values())
        return {
            "scenario_messages": self.messages,
            "feed_messages": len(self.feed),
            "packets": self.packets,
            "frames": len(self.feed_frames),
            "gap_messages": self.gaps,
            "recovery": self.recovery,
            "books_match_exchange": (None if self.book_mismatches is None
                                     else not self.book_mismatches),
            "book_mismatches": [list(map(str, m)) for m in (self.book_mismatches or [])[:8]],
            "book_table_full": self.counters.get("book.counters.table_full", 0),
            "intents": self.counters.get("risk.counters.intents", 0),
            "orders": len(self.orders()),
            "accepted": kinds["A"], "rejected": kinds["J"], "canceled": kinds["C"],
            "fills": kinds["E"],
            "filled_shares": sum(r["quantity"] for r in self.replies if r["type"] == "E"),
            "risk_rejects": risk,
            "exchange_rejects": dict(reject_reasons),
            "pnl": {"total": str(total.total), "realised": str(total.realised),
                    "unrealised": str(total.unrealised), "fees": str(total.fees),
                    "by_symbol": self.positions.snapshot(),
                    "marks": {s: str(Decimal(p) / 10_000) for s, p in self.marks.items()}},
            "latency_cycles": _percentiles(self.latencies),
            "exchange_lag_messages": _percentiles(self.lags),
            "latency_ns": {k: round(v * 1000 / CLOCK_MHZ, 1)
                           for k, v in _percentiles(self.latencies).items() if k != "count"},
            "clock_mhz": CLOCK_MHZ,
            "hardware_latency_agrees": self.latencies == self.hardware_latencies,
            "acknowledged": {"ok": not self.problems, "problems": self.problems[:20]},
            "reconciliation": self._reconciliation(),
            "session": self.session,
            "chunk_messages": self.chunk,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "cycles": self.cycles,
            "messages_per_s": round(self.messages / wall) if wall else 0,
        }


def _drop_copy_pnl(reports, marks):
    """Total P&L from the drop copy alone (the same marks), beside the OUCH-fed positions."""
    positions = Positions()
    for report in reports:
        positions.apply(report)
    for symbol, mark in marks.items():
        positions.mark(symbol, mark)
    return positions.pnl().total


def _percentiles(values):
    if not values:
        return {}
    values = sorted(values)
    return {"count": len(values), "min": values[0], "median": values[len(values) // 2],
            "p99": values[min(len(values) - 1, 99 * len(values) // 100)], "max": values[-1]}


def check_acknowledged(log, replies, symbols, clordid_prefix):
    """Problems (strings) unless every sent order of the order log has exactly one OUCH
    Accepted or Rejected reply whose ClOrdID, and for Accepted side, quantity, symbol and
    price, are the logged order's; and no reply names an order the log never sent."""
    sent = {e["user_ref_num"]: e for e in log if e["sent"]}
    problems, answered = [], {}
    for reply in replies:
        number = reply.get("user_ref_num")
        if number is None:
            continue
        if number not in sent:
            problems.append(f"UserRefNum {number}: OUCH {reply['type']} for an order "
                            "not in the log")
            continue
        if reply["type"] not in ("A", "J"):
            continue
        if number in answered:
            problems.append(f"UserRefNum {number}: answered twice")
        answered[number] = reply
        entry = sent[number]
        expected = {"clordid": f"{clordid_prefix}{number:08X}"}
        if reply["type"] == "A":
            expected |= {"side": "BS"[entry["side"]], "quantity": entry["quantity"],
                         "symbol": symbols[entry["slot"]], "price": entry["price"]}
        for name, value in expected.items():
            if reply[name] != value:
                problems.append(f"UserRefNum {number}: {name} {reply[name]!r}, logged {value!r}")
    problems += [f"UserRefNum {n}: sent, never accepted nor rejected"
                 for n in sorted(set(sent) - set(answered))]
    return problems


def _template(plan, session, server_port):
    """The plan's order template with the live connection's addresses and ports."""
    value = dict(plan["order.template"][-1])
    value |= {"src_ip": LOCALHOST, "dst_ip": LOCALHOST, "src_port": session.local_port,
              "dst_port": server_port}
    return value


def _model_template(value, ack, window):
    return Template(**{k: v for k, v in value.items()
                       if k not in ("display", "capacity", "intermarket_sweep", "cross_type",
                                    "clordid_prefix")},
                    display=bytes([value["display"]]), capacity=bytes([value["capacity"]]),
                    intermarket_sweep=bytes([value["intermarket_sweep"]]),
                    cross_type=bytes([value["cross_type"]]),
                    clordid_prefix=value["clordid_prefix"].to_bytes(6, "big"), ack=ack,
                    window=window)


def _best(exchange, symbol):
    """The exchange's best bid and ask of `symbol` (4 implied decimals, None for an empty
    side)."""
    best = {}
    for order in exchange.resting(symbol):
        best.setdefault(order.side, order.price)
    return best.get("B"), best.get("S")


class _Host:
    """The host's side of a round: order frames to the exchange, replies to positions."""

    def __init__(self, device, session, server, plan, template):
        self.device, self.session, self.server = device, session, server
        self.symbols = {slot: name for name, (_, slot) in plan.symbols.items()}
        self.slots = {name: slot for name, (_, slot) in plan.symbols.items()}
        self.template = template
        self.prefix = template["clordid_prefix"].to_bytes(6, "big").decode()
        self.loaded_ack = session.ack
        self.positions = Positions()
        self.orders = {}               # UserRefNum -> log entry
        self.filled = {}               # UserRefNum -> shares executed so far
        self.log, self.frames, self.risk_rejects, self.lags = [], [], [], []
        self.seen_frames = 0
        self.ip_id = None

    async def round_trip(self, top, published):
        """After a round of frames: check and forward the order frames, wait for the exchange's
        answers, take them into positions and the risk gate. `published`: how many feed
        messages the exchange has published by now."""
        entries = await self.device.drain("order.log")
        self.risk_rejects += await self.device.drain("risk.rejects")
        frames = top.sent[self.seen_frames:]
        self.seen_frames = len(top.sent)
        sent = [e for e in entries if e["sent"]]
        if len(sent) != len(frames):
            raise LoopError(f"{len(sent)} orders logged as sent, {len(frames)} tx frames")
        if self.ip_id is None:
            self.ip_id = await self.device.read("order.next_ip_id") - len(frames)
        for entry, frame in zip(sent, frames, strict=True):
            self._check_frame(entry, frame.data)
            self.session.forward(frame.data[order_formats.SOUPBIN_OFFSET:],
                                 entry["tcp_sequence"])
            self.orders[entry["user_ref_num"]] = entry
            self.lags.append(published - entry["sequence"])
        self.log += entries
        self.frames += frames
        if sent:
            await self._settle()
        await self._take(self.session.poll())

    def _check_frame(self, entry, data):
        expected = order_frame(
            template=_model_template(self.template, self.loaded_ack, self.session.window),
            symbol=self.symbols[entry["slot"]], side=entry["side"], quantity=entry["quantity"],
            price=entry["price"], tif=entry["tif"], tcp_sequence=self.session.next_sequence,
            user_ref_num=entry["user_ref_num"], ip_id=self.ip_id & 0xFFFF)
        if data != expected:
            raise LoopError(f"order frame of UserRefNum {entry['user_ref_num']} differs "
                                 f"from the encoder model's:\n{data.hex()}\n{expected.hex()}")
        if entry["length"] != order_formats.TCP_PAYLOAD_LENGTH:
            raise LoopError(f"order log length {entry['length']}")
        self.ip_id += 1

    async def _settle(self, timeout=10.0):
        """Wait until the exchange has taken every forwarded order and the host has read every
        answer (the simulation's lockstep: the exchange runs in another thread)."""
        deadline = time.monotonic() + timeout
        while self.server.counters["ouch_messages"] < self.session.forwarded:
            if time.monotonic() > deadline:
                raise TimeoutError("the exchange did not take the forwarded orders")
            await self._take(self.session.poll(0.0005))
        await self._take(self.session.poll(0))
        wanted = self.server.exchange.stream_length(self.server.session)
        while len(self.session.replies) < wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.session.replies)} OUCH replies of {wanted}")
            await self._take(self.session.poll(0.05))

    async def _take(self, replies):
        for reply in replies:
            report = self._report(reply)
            if report is None:
                continue
            for update in self.positions.apply(report):
                await self.device.write("risk.fill", update.register_value(self.slots))

    def _report(self, reply):
        """An OUCH order message as the `ExecutionReport` positions are kept from."""
        entry = self.orders.get(reply.get("user_ref_num"))
        if entry is None or reply["type"] == "A":
            return None
        number = reply["user_ref_num"]
        quantity = price = 0
        if reply["type"] == "E":
            quantity, price = reply["quantity"], reply["price"]
            self.filled[number] = self.filled.get(number, 0) + quantity
        cum = self.filled.get(number, 0)
        leaves = 0 if reply["type"] in ("C", "J") else entry["quantity"] - cum
        return ExecutionReport(
            exec_id=f"{reply['sequence']}", cl_ord_id=f"{self.prefix}{number:08X}", order_id="",
            exec_type={"E": "F", "C": "4", "J": "8"}[reply["type"]], ord_status="",
            symbol=self.symbols[entry["slot"]], side="12"[entry["side"]],
            order_qty=entry["quantity"], price=entry["price"], last_qty=quantity,
            last_px=price, cum_qty=cum, leaves_qty=leaves, avg_px="", transact_time="")

    async def keep_session(self):
        """Between rounds: the acknowledgement number the gateware sends with, and a heartbeat
        after a second of idle (the gateware held, then given the new sequence number)."""
        if self.session.heartbeat_due():
            await self.device.write("order.hold", 1)
            self.session.heartbeat()
            await self.device.write("order.load_sequence",
                                    {"value": self.session.next_sequence, "load": 1})
            await self.device.write("order.hold", 0)
        if self.session.ack != self.loaded_ack:
            await self.device.write("order.session", {"ack": self.session.ack,
                                                      "window": self.session.window})
            self.loaded_ack = self.session.ack


class _Recovery:
    """The host's gap recovery (MoldUDP64 1.00 section 3): while the feed handler holds the
    feed (``feed.next_sequence`` below ``feed.recover_to``), ask the re-request server for
    the missing messages over UDP and present each answer at MAC rx, as the unicast frame the
    NIC receives."""

    def __init__(self, server_port, timeout=5.0):
        self.server = ("127.0.0.1", server_port)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(timeout)
        self.counters = collections.Counter(gap_notices=0, rerequests=0, messages=0)

    def close(self):
        self.socket.close()

    async def notices(self, device):
        """Drain the feed's notices; count the GAP notices (one per episode)."""
        for notice in await device.drain("feed.notices"):
            if notice["kind"] == NoticeKind.GAP.value:
                self.counters["gap_notices"] += 1

    async def catch_up(self, device, top, feed=0):
        """Re-request until the feed has caught up; returns the frames presented and the cycle
        each started."""
        frames, starts = [], []
        await self.notices(device)
        while True:
            expected = await device.read("feed.next_sequence", index=feed)
            target = await device.read("feed.recover_to", index=feed)
            if expected >= target:
                return frames, starts
            count = min(target - expected, mold.MAX_MESSAGE_COUNT)
            self.socket.sendto(mold.request(FEED_SESSION, expected, count), self.server)
            self.counters["rerequests"] += 1
            try:
                answer = self.socket.recv(65_536)
            except TimeoutError:
                raise LoopError(f"no answer to the re-request of {count} messages from "
                                f"{expected}") from None
            answered = mold.decode_packet(answer)
            if answered.sequence != expected or not answered.messages:
                raise LoopError(f"re-request from {expected} answered from "
                                f"{answered.sequence} with {len(answered.messages)} messages")
            self.counters["messages"] += len(answered.messages)
            frame = Frame(udp_frame(answer, src_ip=REREQUEST_SOURCE, dst_ip=RECOVERY_IP,
                                    dst_port=RECOVERY_PORT), idle_after=0)
            frames.append(frame)
            starts += top.replay([frame], drain_cycles=QUIET_CYCLES)


class _DropCopy:
    """The FIX 4.4 drop copy beside the order session: the exchange's acceptor sends an
    ExecutionReport for each of its order events; the host's initiator stores each once, by
    ExecID, in SQLite. Both keep their FIX state under `directory` (a fresh one per run: the
    ExecIDs of two runs are the same)."""

    TRADE_DATE = datetime.date(2026, 11, 22)

    def __init__(self, directory):
        self.directory = Path(directory)
        self.received, self.sent = [], 0

    def __enter__(self):
        self.acceptor = DropCopyAcceptor(self.directory / "exchange",
                                         trade_date=self.TRADE_DATE).start()
        self.store = ExecutionStore(self.directory / "executions.sqlite")
        self.client = DropCopyClient(self.directory / "host", self.store,
                                     port=self.acceptor.port, on_report=self.received.append)
        self.client.start()
        self.client.wait_logged_on()
        return self

    def __exit__(self, *exc):
        self.client.stop()
        self.acceptor.stop()
        self.store.close()

    def send(self, events):
        for event in events[self.sent:]:
            self.acceptor.send(event)
        self.sent = len(events)

    def reports(self, timeout=30.0):
        """Every report, once all that were sent have arrived."""
        deadline = time.monotonic() + timeout
        while len(self.store) < self.sent:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.store)} drop copy reports of {self.sent}")
            time.sleep(0.01)
        return [report for _, report in self.store.reports()]


async def _compare_books(device, top, exchange, plan):
    """[(symbol, side, the gateware's levels, the exchange's)] for each side of each traded
    symbol where the gateware's visible levels (price, shares, orders; best first) are not the
    exchange's own book: all of its top levels, or, on a side the book flags not complete
    (orders hidden beyond its stored depth), as many of them as it shows."""
    mismatches, book = [], top.top.book_parameters
    for symbol, (locate, _slot) in plan.symbols.items():
        await device.write("book.snapshot_request", {"write": 1, "locate": locate})
        top.idle(32)
        (snapshot,) = await device.drain("book.snapshot")
        levels = {"B": {}, "S": {}}
        for order in exchange.resting(symbol):
            shares, orders = levels[order.side].get(order.price, (0, 0))
            levels[order.side][order.price] = (shares + order.shares, orders + 1)
        for bit, (side, name) in enumerate((("B", "bid"), ("S", "ask"))):
            shown = unpack(data.ArrayLayout(level_layout(book), book.visible), snapshot[name])
            shown = [shown[i] for i in sorted(shown)]
            ours = [(lv["price"], lv["shares"], lv["orders"]) for lv in shown if lv["shares"]]
            best = sorted(levels[side], reverse=side == "B")[:len(shown)]
            theirs = [(price, *levels[side][price]) for price in best]
            if not snapshot["complete"] >> bit & 1:
                # Orders beyond the stored depth are hidden: the levels shown are exact, and
                # fewer than there are (`OrderBook`'s hidden zone).
                theirs = theirs[:len(ours)] if len(ours) < len(shown) else None
            if ours != theirs:
                mismatches.append((symbol, side, ours, theirs))
    return mismatches


async def _loop(top, flow, config_documents, chunk, seed, loss, progress, heartbeat_interval,
                drop_copy, recover):
    seconds = dict.fromkeys(("exchange", "framing", "verilator", "latency", "recovery", "host",
                             "marks", "drop_copy"), 0.0)

    def timed(stage, started):
        seconds[stage] += time.perf_counter() - started
        return time.perf_counter()

    exchange = Exchange(DEFAULT_SYMBOLS)
    server = OrderEntryServer(exchange, session=ORDER_SESSION, username=USERNAME,
                              password=PASSWORD)
    feed, feed_frames, feed_starts, pnl_series, arrivals, marks, bbo = [], [], [], [], {}, {}, {}
    rerequest = RerequestServer(FEED_SESSION, feed)
    packets, first_cycle = 0, top.cycle
    with serve_in_thread(server, rerequest), contextlib.closing(
            _Recovery(rerequest.port)) as recovery:
        with OrderSession("127.0.0.1", server.port, username=USERNAME, password=PASSWORD,
                          heartbeat_interval=heartbeat_interval) as session:
            session.login()
            device = await Device.open(top, top.register_map, identity=top.identity)
            plan = parse_documents(config_documents, device.map)
            if "order.template" not in plan:
                plan = parse_documents([*config_documents, ("default [order]", ORDER_SECTION)],
                                       device.map)
            template = _template(plan, session, server.port)
            if "feed.filters" not in plan:
                await api.load_filters(device, loop_filters())
            await device.write("feed.recover", int(recover))
            for write in plan.writes:
                value = template if write.register == "order.template" else write.value
                await device.write(write.register, value, index=write.index)
            await api.start_session(device, sequence=session.next_sequence, ack=session.ack,
                                    window=session.window)
            await api.arm(device)
            host = _Host(device, session, server, plan, template)

            async def present(messages, last, round_end=True):
                """Publish `messages` (one packet, or more if they do not fit) on lines A and
                B; then recover any gap; then, if the device sent orders (or at the end of a
                round), the host's side."""
                nonlocal packets, sent
                started = time.perf_counter()
                # (Seeded by the sequence number: each packet's losses are drawn afresh.)
                frames = ab_frames(FEED_SESSION, messages, seed=seed * 10**9 + sent, idle=0,
                                   loss=loss, end_of_session=last, first_sequence=sent + 1,
                                   max_payload=MAX_PAYLOAD)
                packets += len(mold.pack_messages(FEED_SESSION, sent + 1, messages,
                                                  MAX_PAYLOAD)) + last
                sent += len(messages)
                started = timed("framing", started)
                starts = top.replay(frames, drain_cycles=QUIET_CYCLES)
                while top.sending:              # an order frame still on the wire
                    top.idle(16)
                started = timed("verilator", started)
                arrivals.update(message_arrivals(frames, starts, loop_filters()))
                feed_frames.extend(frames)
                feed_starts.extend(starts)
                started = timed("latency", started)
                if recover:
                    # Messages held live arrive again in the retransmissions: those copies
                    # are the ones the gateware delivers (the update replaces the held ones).
                    again, again_starts = await recovery.catch_up(device, top)
                    arrivals.update(message_arrivals(again, again_starts, loop_filters()))
                    feed_frames.extend(again)
                    feed_starts.extend(again_starts)
                    started = timed("recovery", started)
                if round_end or len(top.sent) > host.seen_frames:
                    await host.round_trip(top, len(feed))
                if round_end:
                    await host.keep_session()
                timed("host", started)

            sent = 0
            for first in range(0, len(flow), chunk):
                started = time.perf_counter()
                for message in flow[first:first + chunk]:
                    # A packet goes out before the exchange applies a message that might not
                    # fit in it, so that an order it triggers meets the book it showed.
                    if _payload(feed[sent:]) + 2 + MAX_ITCH_LENGTH > MAX_PAYLOAD:
                        timed("exchange", started)
                        await present(feed[sent:], last=False, round_end=False)
                        started = time.perf_counter()
                    feed.extend(exchange.published())
                    feed.extend(exchange.apply_market(message))
                feed.extend(exchange.published())
                timed("exchange", started)
                await present(feed[sent:], last=False)
                started = time.perf_counter()
                for symbol in DEFAULT_SYMBOLS:
                    bid, ask = _best(exchange, symbol)
                    bbo.setdefault(symbol, []).append((exchange.time_ns, bid, ask))
                    if bid is not None and ask is not None:
                        marks[symbol] = Decimal(bid + ask) / 2
                        host.positions.mark(symbol, marks[symbol])
                pnl_series.append((exchange.time_ns, host.positions.pnl().total))
                started = timed("marks", started)
                if drop_copy is not None:
                    drop_copy.send(exchange.events)
                    timed("drop_copy", started)
                if progress is not None:
                    progress(min(first + chunk, len(flow)))
            # The end of the day: nothing more is sent; resting orders are cancelled, the order
            # session and the feed end.
            await api.disarm(device)
            exchange.end_of_day()
            server.end_session()
            feed.extend(exchange.published())
            await present(feed[sent:], last=True)
            ended = "feed.counters.mold.end_of_session"
            if recover and not (await device.counters(ended)).get(ended):
                # The end of session came while the feed was held: the exchange repeats it.
                eos = ab_frames(FEED_SESSION, [], seed=seed, idle=0, first_sequence=len(feed) + 1)
                feed_starts.extend(top.replay(eos, drain_cycles=QUIET_CYCLES))
                feed_frames.extend(eos)
            await host._take(session.wait_for_end())
            counters = await device.counters()
            book_mismatches = None
            if not counters.get("book.counters.table_full"):
                book_mismatches = await _compare_books(device, top, exchange, plan)
            reports = reconciliation = None
            if drop_copy is not None:
                started = time.perf_counter()
                drop_copy.send(exchange.events)
                reports = drop_copy.reports()
                reconciliation = reconcile(host.log, session.replies, reports,
                                           clordid_prefix=host.prefix, symbols=host.symbols)
                timed("drop_copy", started)
            hardware = [e["at"] - e["arrival"] for e in host.log if e["sent"]]
    latencies = [frame.cycle - arrivals[(0, entry["sequence"])][0]
                 for entry, frame in zip(host.orders.values(), host.frames, strict=True)]
    delivered = counters.get("feed.counters.mold.messages", 0)
    return LoopResult(
        messages=len(flow), feed=feed, feed_frames=feed_frames, feed_starts=feed_starts,
        packets=packets, log=host.log, bbo=bbo,
        order_frames=host.frames, replies=session.replies, events=list(exchange.events),
        risk_rejects=host.risk_rejects, latencies=latencies, lags=host.lags,
        hardware_latencies=hardware,
        positions=host.positions, marks=marks, pnl_series=pnl_series, counters=counters,
        exchange_counters=dict(exchange.counters), server_counters=dict(server.counters),
        session={"next_sequence": session.next_sequence, "ack": session.ack,
                 "heartbeats_sent": session.heartbeats_sent,
                 "heartbeats_received": session.heartbeats_received,
                 "forwarded": session.forwarded, "ended": session.ended},
        symbols=host.symbols, clordid_prefix=template["clordid_prefix"].to_bytes(6, "big").decode(),
        seconds=seconds, chunk=chunk, cycles=top.cycle - first_cycle,
        reports=reports, reconciliation=reconciliation,
        problems=check_acknowledged(host.log, session.replies, host.symbols,
                                    template["clordid_prefix"].to_bytes(6, "big").decode()),
        gaps=len(feed) - delivered, book_mismatches=book_mismatches,
        recovery=dict(recovery.counters,
                      held_packets=counters.get("feed.counters.mold.held_packets", 0),
                      resent_by_exchange=rerequest.counters["messages_resent"]))


#: The build `tickwire sim` runs: the test build's book with the order-table capacity the
#: issue asks of the default build (65,536 orders, 8 ways). The scenario keeps orders resting:
#: about 5,500 are live after its default 20,000 messages, which overflowed sets of the test
#: build's 2,048-entry table (about 4,000 adds refused, so the book was no longer exact and
#: could not be compared with the exchange's). Simulated, a larger table costs only memory.
SIM_PARAMETERS = {"book": TEST_BOOK._replace(orders=65536, ways=8)}


def run_closed_loop(messages=20_000, seed=2026, *, configs=None, chunk=CHUNK, loss=(0.0, 0.0),
                    top=None, progress=None, parameters=None, flow=None,
                    heartbeat_interval=1.0, drop_copy=True, recover=True, vcd=None):
    """Run the default scenario (`messages` ITCH messages of `seed`) through the whole loop.

    `configs`: [(source name, TOML text)] for the host's parser (default:
    `default_configuration`; `ORDER_SECTION` unless they have an ``[order]``); `top`: a
    `VerilatedTop` to reuse (powered on afresh), else one of `SIM_PARAMETERS` (or
    `parameters`); `progress(done)` is called with the
    scenario messages done after each round; `flow` replaces the scenario's ITCH messages
    (`messages` is then ignored); `heartbeat_interval`: the host's SoupBinTCP idle time before
    a heartbeat (seconds of wall time); `drop_copy`: run the FIX drop copy (QuickFIX, both
    ends) and reconcile it with the order log and the OUCH replies; `recover`: gap recovery by
    re-request (off: a message lost on both lines is lost, as the feed handler's GAP notice
    says); `vcd`: (path, first cycle, cycles): every signal of the device during that window
    of simulated cycles (counted from power-on, as the report's pcap time stamps are) to a VCD
    file (the traced build: `top` must be one, ``VerilatedTop(trace=True)``)."""
    flow = order_flow(messages, seed=seed) if flow is None else list(flow)
    configs = configs or [("default configuration", default_configuration(flow))]
    if top is None:
        top = VerilatedTop(trace=vcd is not None, **(parameters or SIM_PARAMETERS))
    else:
        top.power_on()
    if vcd is not None:
        path, first, cycles = vcd
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        top.harness.trace(path, first, cycles)
    with contextlib.ExitStack() as stack:
        fix = None
        if drop_copy:
            work = stack.enter_context(tempfile.TemporaryDirectory(prefix="tickwire-fix-"))
            fix = stack.enter_context(_DropCopy(work))
        try:
            return asyncio.run(_loop(top, flow, configs, chunk, seed, tuple(loss), progress,
                                     heartbeat_interval, fix, recover))
        finally:
            if vcd is not None:
                top.harness.trace_end()


def closed_loop_figures(messages=20_000, seed=2026, runs=3):
    """`make bench` (``sim.*``): `tickwire sim`'s loop on its default scenario, `runs` times on
    one Verilated model; the run with the median rate. ``sim.replay_msgs_per_s`` counts
    scenario messages per second of the loop (scenario generation excluded); the
    ``sim.seconds.*`` say where the time goes."""
    top = VerilatedTop(**SIM_PARAMETERS)
    results = sorted((run_closed_loop(messages, seed, top=top) for _ in range(runs)),
                     key=lambda r: r.summary()["messages_per_s"])
    summary = results[len(results) // 2].summary()
    figures = {"sim.replay_msgs_per_s": summary["messages_per_s"],
               "sim.messages": summary["scenario_messages"], "sim.orders": summary["orders"],
               "sim.fills": summary["fills"],
               "sim.cycles_per_message": round(summary["cycles"] / messages, 2),
               "sim.verilator_cycles_per_s": round(summary["cycles"]
                                                   / summary["seconds"]["verilator"])}
    figures |= {f"sim.seconds.{k}": v for k, v in summary["seconds"].items()}
    return figures


# The report folder -------------------------------------------------------------------------------

#: pcap timestamps: the session's date at 09:30 UTC plus the simulated cycles at `CLOCK_MHZ`.
PCAP_EPOCH_NS = 1_795_339_800 * 10**9        # 2026-11-22 09:30:00 UTC


def write_pcap(path, frames):
    """A libpcap file (nanosecond timestamps, Ethernet link type) of `frames`: [(bytes,
    cycle)]."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))
        for data, cycle in frames:
            ns = PCAP_EPOCH_NS + cycle * 1000 * 1000 // round(CLOCK_MHZ * 1000)
            out.write(struct.pack("<IIII", ns // 10**9, ns % 10**9, len(data), len(data)))
            out.write(data)


def _plots(result, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    figure, axes = plt.subplots(figsize=(7, 4))
    if result.latencies:
        low, high = min(result.latencies), max(result.latencies)
        axes.hist(result.latencies, bins=range(low, high + 2), align="left", color="tab:blue")
    axes.set_xlabel("actionable latency (cycles; x 6.4 ns at 156.25 MHz)")
    axes.set_ylabel("orders")
    axes.set_title(f"tick to trade, {len(result.latencies)} orders")
    paths.append(out / "latency.png")
    figure.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(7, 4))
    start = result.pnl_series[0][0] if result.pnl_series else 0
    axes.plot([(t - start) / 1e9 for t, _ in result.pnl_series],
              [float(p) for _, p in result.pnl_series], color="tab:green")
    axes.set_xlabel("exchange time since the first round (s)")
    axes.set_ylabel("P&L, marked to mid ($)")
    axes.set_title("P&L over the session")
    paths.append(out / "pnl.png")
    figure.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(figure)

    fills = {}
    for reply in result.replies:
        entry = next((e for e in result.log if e["sent"]
                      and e["user_ref_num"] == reply.get("user_ref_num")), None)
        if reply["type"] == "E" and entry is not None:
            fills.setdefault(result.symbols[entry["slot"]], []).append(
                (reply["timestamp"], reply["price"], entry["side"]))
    symbol = max(fills, key=lambda s: len(fills[s])) if fills else DEFAULT_SYMBOLS[0]
    series = result.bbo.get(symbol, [])
    figure, axes = plt.subplots(figsize=(7, 4))
    for index, (name, color) in enumerate((("best bid", "tab:blue"), ("best ask", "tab:red"))):
        points = [(t, p[index]) for t, *p in series if p[index] is not None]
        axes.step([(t - start) / 1e9 for t, _ in points], [p / 1e4 for _, p in points],
                  where="post", color=color, label=name)
    for side, marker, color, label in ((0, "^", "tab:green", "our buys"),
                                       (1, "v", "tab:purple", "our sells")):
        points = [(t, p) for t, p, s in fills.get(symbol, []) if s == side]
        axes.scatter([(t - start) / 1e9 for t, _ in points], [p / 1e4 for _, p in points],
                     marker=marker, color=color, label=label, zorder=3)
    axes.set_xlabel("exchange time since the first round (s)")
    axes.set_ylabel("price ($)")
    axes.set_title(f"{symbol}: the exchange's best bid and ask after each round, our fills")
    axes.legend(loc="best", fontsize="small")
    paths.append(out / f"book_{symbol}.png")
    figure.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(figure)
    return paths


def write_report(result, out):
    """The report folder: ``summary.json``, ``feed.pcap`` (lines A and B as presented at MAC
    rx), ``orders.pcap`` (the device's order frames at MAC tx), ``latency.png``, ``pnl.png``
    and ``book_<SYMBOL>.png`` (the symbol with the most fills). Returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "summary.json"
    summary.write_text(json.dumps(result.summary(), indent=2) + "\n")
    feed, orders = out / "feed.pcap", out / "orders.pcap"
    write_pcap(feed, [(f.data, c) for f, c in zip(result.feed_frames, result.feed_starts,
                                                 strict=True)])
    write_pcap(orders, [(f.data, f.cycle) for f in result.order_frames])
    return [summary, feed, orders, *_plots(result, out)]
