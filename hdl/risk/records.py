"""Records and parameters of the pre-trade risk gate (`tickwire.hdl.risk.gate.RiskGate`).

Every layout here is derived from a `RiskParameters`, so the gateware, the reference model
(`tickwire.sim.risk_model`) and the tests agree on widths by construction.
"""

from typing import NamedTuple

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

from tickwire.hdl.feed.events import Side
from tickwire.hdl.strategy.records import OrderIntent

__all__ = [
    "RejectReason", "KillReason", "RiskParameters", "LimitsEntry", "ThrottleConfig",
    "AutoKillConfig", "REASONS", "RejectRecord", "Alarms", "RISK_COUNTERS", "COLLAR_SCALE",
    "limits_write_layout", "fill_layout", "position_write_layout", "read_request_layout",
    "readback_layout",
]

TIME_BITS = 56       # cycle counter and throttle times (14 years at 156.25 MHz: never wraps)
TOTAL_BITS = 48      # positions, limits, cumulative sent / filled quantities
ROOM_BITS = 52       # signed: position_limit - position + done (see `RiskGate`)
CAP_BITS = 48        # collar references: best price * (10000 +- bps)
BPS_BITS = 14        # collar in basis points (0 .. 16383)
COLLAR_SCALE = 10000  # basis points per unit


class RejectReason(enum.Enum, shape=4):
    """Why an intent did not become an order; checks are made in this order and the first
    that fails is the reason. ``NONE`` (0) is no reason: a log entry always has another."""
    NONE = 0
    NOT_ARMED = 1        # the host has not armed the gate (``armed`` low)
    KILLED = 2           # the kill switch is set (or its strobe is high this cycle)
    BAD_SLOT = 3         # ``slot`` beyond the build's tables
    DISABLED = 4         # the slot's symbol is not enabled
    QUANTITY = 5         # zero, or above the slot's max quantity
    NOTIONAL = 6         # price * quantity above the slot's max notional
    NO_REFERENCE = 7     # no BBO on the side the collar needs, or collar changed since it came
    COLLAR = 8           # buy above ask + bps, or sell below bid - bps
    POSITION = 9         # worst-case position would pass the slot's position limit
    SLOT_THROTTLE = 10   # the slot's order-rate bucket is empty
    GLOBAL_THROTTLE = 11  # the gate's order-rate bucket is empty
    NOT_READY = 12       # passed every check, but the order encoder was not ready


class KillReason(enum.Enum, shape=2):
    """Why the kill switch was set (the first cause; cleared with the switch)."""
    NONE = 0
    HOST = 1             # the host wrote ``kill``
    REJECT_RATE = 2      # ``auto_kill.rejects`` rejects within one window


#: Counters: intents seen, orders passed, one per `RejectReason` (lower case), and losses.
REASONS = tuple(r for r in RejectReason if r != RejectReason.NONE)
RISK_COUNTERS = ("intents", "passes", *(r.name.lower() for r in REASONS),
                 "log_overflow", "host_overflow", "orders_lost")


class RiskParameters(NamedTuple):
    """Build parameters. The defaults are the ECP5 build (one table entry per book slot)."""
    symbols: int = 1024      # per-slot table entries (= BookParameters().symbols)
    log_depth: int = 64      # reject log FIFO entries (to the host)
    host_depth: int = 16     # queued host table operations (fills, limits, positions, reads)

    @property
    def slot_bits(self):
        return max(1, (self.symbols - 1).bit_length())

    def check(self):
        if self.symbols < 2 or self.symbols & (self.symbols - 1):
            raise ValueError(f"symbols must be a power of two >= 2, not {self.symbols}")
        return self


class LimitsEntry(data.Struct):
    """One slot's limits, written by the host (``limits`` strobe)."""
    enabled: 1
    max_quantity: 32
    max_notional: 64      # price (ITCH Price(4), 4 implied decimals) * quantity
    collar_bps: BPS_BITS
    position_limit: TOTAL_BITS


class ThrottleConfig(data.Struct):
    """A token bucket: ``burst`` tokens, one more every ``interval`` cycles (0: no limit on
    the rate). ``burst`` 0 lets nothing pass."""
    interval: 32
    burst: 16


class AutoKillConfig(data.Struct):
    """Kill after ``rejects`` rejects within one window of ``window`` cycles (0: never)."""
    rejects: 16
    window: 32


class RejectRecord(data.Struct):
    """One reject log entry for the host."""
    intent: OrderIntent
    reason: RejectReason


class Alarms(data.Struct):
    """Sticky until the host writes ``clear_alarms``."""
    killed: 1          # the kill switch was set (by the host or by the reject rate)
    log_overflow: 1    # a reject log entry was lost to a full FIFO
    host_overflow: 1   # a host table operation was lost to a full queue
    order_lost: 1      # an order was presented while the encoder was not ready


def limits_write_layout(p):
    return data.StructLayout({"write": 1, "index": unsigned(p.slot_bits), "entry": LimitsEntry})


def fill_layout(p):
    """A fill and/or a release of open quantity: open -= filled + released; position +=
    filled (buy) or -= filled (sell)."""
    return data.StructLayout({"write": 1, "index": unsigned(p.slot_bits), "side": Side,
                              "filled": unsigned(32), "released": unsigned(32)})


def position_write_layout(p):
    return data.StructLayout({"write": 1, "index": unsigned(p.slot_bits),
                              "position": signed(TOTAL_BITS)})


def read_request_layout(p):
    return data.StructLayout({"read": 1, "index": unsigned(p.slot_bits)})


def readback_layout(p):
    """A slot's position and open quantities, after a ``read_request``; ``count`` counts
    answers (it changes when a new one is here)."""
    return data.StructLayout({"index": unsigned(p.slot_bits), "count": unsigned(8),
                              "position": signed(TOTAL_BITS),
                              "open_buy": signed(TOTAL_BITS + 1),
                              "open_sell": signed(TOTAL_BITS + 1)})
