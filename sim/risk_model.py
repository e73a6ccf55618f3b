"""Reference model of the pre-trade risk gate (`tickwire.hdl.risk.gate.RiskGate`).

Input: one `Cycle` per clock cycle (an intent, a BookUpdate, host strobes and configuration,
the order encoder's ``ready``). Output: the orders (with the cycle each is valid at
``orders``), the reject log, the counters, the alarms, the kill switch and the readbacks.

The checks are the rules as stated (see `RiskGate`), taken one intent after the other: every
intent sees every order passed before it. What the model knows of the gateware is only the
timing it promises: an intent valid in cycle c is decided in cycle c + 2 (its order valid in
c + 3); it sees host table operations written before cycle c (an operation is written 4
cycles after it was strobed, one at a time), BookUpdates valid before cycle c - 3,
order-rate configuration of cycle c - 1, the kill switch, ``armed`` and ``ready`` of cycle
c + 2.
"""

import dataclasses
from collections import deque

from tickwire.hdl.risk.records import (
    COLLAR_SCALE,
    REASONS,
    RISK_COUNTERS,
    TIME_BITS,
    TOTAL_BITS,
    KillReason,
    RejectReason,
    RiskParameters,
)

R = RejectReason
_TOTAL = (1 << TOTAL_BITS) - 1
_TIME = (1 << TIME_BITS) - 1


def _signed(value, bits):
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


@dataclasses.dataclass
class Cycle:
    """What the gate's inputs hold in one cycle (None: nothing valid, no strobe)."""
    intent: dict | None = None       # OrderIntent fields
    update: dict | None = None       # slot, bid_price, bid_shares, ask_price, ask_shares
    ready: int = 1                   # orders.ready
    armed: int = 0
    kill: int = 0
    clear_kill: int = 0
    clear_alarms: int = 0
    slot_throttle: tuple = (0, 0)    # (interval, burst)
    global_throttle: tuple = (0, 0)
    auto_kill: tuple = (0, 0)        # (rejects, window)
    limits: dict | None = None       # index, enabled, max_quantity, max_notional, collar_bps,
                                     # position_limit
    fill: dict | None = None         # index, side, filled, released
    set_position: dict | None = None  # index, position
    read_request: int | None = None  # index


@dataclasses.dataclass
class Limits:
    enabled: int = 0
    max_quantity: int = 0
    max_notional: int = 0
    collar_bps: int = 0


@dataclasses.dataclass
class Account:
    position: int = 0
    done_buy: int = 0
    done_sell: int = 0
    limit: int = 0


@dataclasses.dataclass
class Refs:
    bps: int = 0
    bid_ok: int = 0
    ask_ok: int = 0
    buy_cap: int = 0
    sell_floor: int = 0


class RiskModel:
    def __init__(self, parameters=None):
        self.p = p = parameters or RiskParameters()
        n = p.symbols
        self.limits = [Limits() for _ in range(n)]
        self.collar_bps = [0] * n          # the collar copy BookUpdates are scaled with
        self.account = [Account() for _ in range(n)]
        self.refs = [Refs() for _ in range(n)]
        self.sent = [[0, 0] for _ in range(n)]   # per slot: buy, sell
        self.tat = [0] * n
        self.global_tat = 0
        self.cycle = 0
        self.configs = deque([Cycle()] * 3, maxlen=3)   # the last three cycles' inputs
        self.pending = deque([None, None])  # (intent, captured tables), decided 2 later
        self.updates = deque()             # (cycle written, slot, Refs)
        self.queue = deque()               # host operations (kind, args), level as of now
        self.engine = ("IDLE", None, None)
        self.killed, self.kill_reason = 0, KillReason.NONE
        self.window_left, self.window_count, self.storm = 0, 0, 0
        self.orders = []                   # (cycle valid at orders, intent)
        self.log = []                      # (intent, reason) in the reject FIFO
        self.counters = {name: 0 for name in RISK_COUNTERS}
        self.alarms = {"killed": 0, "log_overflow": 0, "host_overflow": 0, "order_lost": 0}
        self.readbacks = []                # (cycle visible, dict)
        self.killed_trace = []             # killed, per cycle (its value during the cycle)
        self.decisions = []                # (cycle decided, intent, reason or None)
        self._order_valid = 0

    # -- one cycle ----------------------------------------------------------------------------
    def step(self, c):
        p = self.p
        now = self.cycle
        self.killed_trace.append(self.killed)
        older = self.configs[0]             # the inputs of cycle now - 3
        # The order presented this cycle (decided last cycle) meets this cycle's ready.
        if self._order_valid and not c.ready:
            self.counters["orders_lost"] += 1
            self.alarms["order_lost"] = 1
        # The host engine reads its tables (before this cycle's writes).
        state, op, captured = self.engine
        level = len(self.queue)
        next_engine = state, op, captured
        if state == "IDLE" and self.queue:
            op = self.queue.popleft()
            index = op[1]["index"]
            captured = (dataclasses.replace(self.account[index]), list(self.sent[index]))
            next_engine = ("READ", op, captured)
        # The intent presented this cycle reads its tables (before this cycle's writes).
        new_pending = None
        if c.intent is not None:
            slot = c.intent["slot"] & (p.symbols - 1)
            acct = self.account[slot]
            new_pending = (dict(c.intent), dataclasses.replace(self.limits[slot]),
                           dataclasses.replace(self.refs[slot]),
                           (acct.limit - acct.position + acct.done_buy,
                            acct.limit + acct.position + acct.done_sell))
        # The update presented this cycle reads its collar (before this cycle's writes).
        if c.update is not None:
            u = c.update
            bps = self.collar_bps[u["slot"]]
            up = COLLAR_SCALE + bps
            down = max(0, COLLAR_SCALE - bps)
            self.updates.append((now + 3, u["slot"], Refs(
                bps, int(u["bid_shares"] != 0), int(u["ask_shares"] != 0),
                u["ask_price"] * up, u["bid_price"] * down)))
        # The decision.
        passed, storm = 0, 0
        deciding = self.pending.popleft()
        if deciding is not None:
            intent, limits, refs, rooms = deciding
            reason = self._check(c, older, intent, limits, refs, rooms)
            self.counters["intents"] += 1
            self.decisions.append((now, intent, reason))
            if reason is None:
                passed = 1
                self._pass(older, intent)
                self.orders.append((now + 1, intent))
                self.counters["passes"] += 1
            else:
                self.counters[reason.name.lower()] += 1
                storm = int(reason not in (R.NOT_ARMED, R.KILLED))
                if len(self.log) < p.log_depth:
                    self.log.append((intent, reason))
                else:
                    self.counters["log_overflow"] += 1
                    self.alarms["log_overflow"] = 1
        self._order_valid = passed
        self.pending.append(new_pending)
        # The engine's writes and answers.
        if state == "READ":
            next_engine = ("UPDATE", op, captured)
        elif state == "UPDATE":
            next_engine = ("WRITE", op, self._engine_compute(op, captured, now))
        elif state == "WRITE":
            self._engine_write(op, captured)
            next_engine = ("IDLE", None, None)
        self.engine = next_engine
        while self.updates and self.updates[0][0] == now:
            _, slot, refs = self.updates.popleft()
            self.refs[slot] = refs
        # Host strobes join the queue (at most one per cycle: the bank's rule); the queue's
        # room is judged by its level at the start of the cycle.
        ops = [(k, v) for k, v in (("fill", c.fill), ("limits", c.limits),
                                   ("set_position", c.set_position),
                                   ("read", None if c.read_request is None
                                    else {"index": c.read_request})) if v is not None]
        if ops:
            if len(ops) > 1 or level >= p.host_depth:
                self.counters["host_overflow"] += 1
                self.alarms["host_overflow"] = 1
            if level < p.host_depth:
                self.queue.append(ops[0])
        # The kill switch.
        rejects, window = c.auto_kill
        in_window = (0 if self.window_left == 0 else self.window_count) + self.storm
        kill_now = c.kill or (rejects != 0 and in_window >= rejects)
        self.window_left = max(window - 1, 0) if self.window_left == 0 else self.window_left - 1
        self.window_count = min(in_window, rejects)
        if kill_now:
            if not self.killed:
                self.kill_reason = KillReason.HOST if c.kill else KillReason.REJECT_RATE
            self.killed = 1
        elif c.clear_kill:
            self.killed, self.kill_reason = 0, KillReason.NONE
        self.storm = storm
        if c.clear_alarms:
            self.alarms = dict.fromkeys(self.alarms, 0)
        if kill_now:
            self.alarms["killed"] = 1
        self.configs.append(c)
        self.cycle += 1

    def _check(self, c, older, intent, limits, refs, rooms):
        """The reject reason of `intent` decided in this cycle, or None."""
        p = self.p
        now = self.cycle
        buy = intent["side"] == 0
        qty, price = intent["quantity"], intent["price"]
        slot = intent["slot"]
        if not c.armed:
            return R.NOT_ARMED
        if self.killed or c.kill:
            return R.KILLED
        if slot >= p.symbols:
            return R.BAD_SLOT
        if not limits.enabled:
            return R.DISABLED
        if qty == 0 or qty > limits.max_quantity:
            return R.QUANTITY
        if price * qty > limits.max_notional:
            return R.NOTIONAL
        if not (refs.ask_ok if buy else refs.bid_ok) or refs.bps != limits.collar_bps:
            return R.NO_REFERENCE
        scaled = price * COLLAR_SCALE
        if (scaled > refs.buy_cap) if buy else (scaled < refs.sell_floor):
            return R.COLLAR
        room = rooms[0] if buy else rooms[1]
        if self.sent[slot][0 if buy else 1] + qty > room:
            return R.POSITION
        interval, burst = older.slot_throttle
        if burst == 0 or self.tat[slot] > now + (burst - 1) * interval:
            return R.SLOT_THROTTLE
        interval, burst = older.global_throttle
        if burst == 0 or self.global_tat > now + (burst - 1) * interval:
            return R.GLOBAL_THROTTLE
        if not c.ready:
            return R.NOT_READY
        return None

    def _pass(self, older, intent):
        now, slot = self.cycle, intent["slot"]
        side = 0 if intent["side"] == 0 else 1
        self.sent[slot][side] = (self.sent[slot][side] + intent["quantity"]) & _TOTAL
        interval = older.slot_throttle[0]
        self.tat[slot] = (max(self.tat[slot], now) + interval) & _TIME
        interval = older.global_throttle[0]
        self.global_tat = (max(self.global_tat, now) + interval) & _TIME

    def _engine_compute(self, op, captured, now):
        kind, args = op
        acct, sent = captured
        acct = dataclasses.replace(acct)
        if kind == "limits":
            acct.limit = args["position_limit"]
        elif kind == "fill":
            done = args["filled"] + args["released"]
            if args["side"] == 0:
                acct.done_buy = (acct.done_buy + done) & _TOTAL
                acct.position = _signed(acct.position + args["filled"], TOTAL_BITS)
            else:
                acct.done_sell = (acct.done_sell + done) & _TOTAL
                acct.position = _signed(acct.position - args["filled"], TOTAL_BITS)
        elif kind == "set_position":
            acct.position = args["position"]
        elif kind == "read":
            self.readbacks.append((now + 1, {
                "index": args["index"], "position": acct.position,
                "open_buy": sent[0] - acct.done_buy, "open_sell": sent[1] - acct.done_sell}))
        return acct

    def _engine_write(self, op, acct):
        kind, args = op
        if kind == "read":
            return
        index = args["index"]
        self.account[index] = acct
        if kind == "limits":
            self.limits[index] = Limits(args["enabled"], args["max_quantity"],
                                        args["max_notional"], args["collar_bps"])
            self.collar_bps[index] = args["collar_bps"]

    # -- whole runs ---------------------------------------------------------------------------
    def run(self, cycles):
        for c in cycles:
            self.step(c)
        return self


__all__ = ["Cycle", "RiskModel", "REASONS"]
