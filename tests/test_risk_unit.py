"""Unit tier: the risk gate in Amaranth's simulator, against `RiskModel`, one rule at a time."""

import pytest

from tickwire.hdl.platform.device import describe_only
from tickwire.hdl.platform.registers import Block, RegisterMap
from tickwire.hdl.risk.gate import (
    HOST_OP_CYCLES,
    KILL_BOUND_CYCLES,
    RISK_LATENCY_CYCLES,
    UPDATE_DELAY_CYCLES,
    KillReason,
    RiskGate,
)
from tickwire.hdl.risk.records import REASONS, RejectReason, RiskParameters
from tickwire.sim.risk_model import RiskModel
from tickwire.sim.risk_run import Script, run_gate_sim

R = RejectReason
P = RiskParameters(symbols=16, log_depth=16, host_depth=4)
BUY, SELL = 0, 1
SLOT = 3


def run_both(script, params=P):
    cycles = script.cycles + [script._cycle(**script.config)] * 8
    run = run_gate_sim(cycles, RiskGate(params))
    model = RiskModel(params).run(cycles)
    assert run.orders == model.orders
    assert run.log == model.log
    assert run.counters == model.counters
    assert run.alarms == model.alarms
    assert run.killed == model.killed_trace
    assert run.kill_reason == model.kill_reason.value
    assert run.readbacks == model.readbacks
    assert run.counters["intents"] == run.counters["passes"] + sum(
        run.counters[r.name.lower()] for r in REASONS)
    return run, model


def ready_slot(s=None, slot=SLOT, bid=10000, ask=10100, **limits):
    """A script with `slot` enabled, limits written, a BBO known and generous buckets."""
    s = s or Script(slot_throttle=(0, 4), global_throttle=(0, 4))
    s.idle(2)
    s.limits(slot, **limits)
    s.update(slot, bid, ask)
    return s


def reasons(run):
    return [reason for _, reason in run.log]


def test_an_order_passes_in_two_cycles():
    s = ready_slot()
    at = s.intent(SLOT, BUY, 10100, 10, sequence=77)
    run, _ = run_both(s)
    assert [(c - at, o["sequence"]) for c, o in run.orders] == [(RISK_LATENCY_CYCLES, 77)]
    assert RISK_LATENCY_CYCLES == 3
    assert run.counters["passes"] == 1 and run.log == []


CASES = {
    # name: (limits, intent (side, price, quantity), extra script, expected reason)
    "not armed": ({}, (BUY, 10100, 10), {"armed": 0}, R.NOT_ARMED),
    "killed": ({}, (BUY, 10100, 10), {"kill": 1}, R.KILLED),
    "disabled": ({"enabled": 0}, (BUY, 10100, 10), {}, R.DISABLED),
    "zero quantity": ({}, (BUY, 10100, 0), {}, R.QUANTITY),
    "quantity above max": ({"max_quantity": 9}, (BUY, 10100, 10), {}, R.QUANTITY),
    "notional": ({"max_notional": 10100 * 10 - 1}, (BUY, 10100, 10), {}, R.NOTIONAL),
    "collar buy": ({"collar_bps": 100}, (BUY, 10202, 10), {}, R.COLLAR),    # ask 10100 +1%
    "collar sell": ({"collar_bps": 100}, (SELL, 9899, 10), {}, R.COLLAR),   # bid 10000 -1%
    "position buy": ({"position_limit": 9}, (BUY, 10100, 10), {}, R.POSITION),
    "position sell": ({"position_limit": 9}, (SELL, 10000, 10), {}, R.POSITION),
    "slot throttle": ({}, (BUY, 10100, 10), {"slot_throttle": (5, 0)}, R.SLOT_THROTTLE),
    "global throttle": ({}, (BUY, 10100, 10), {"global_throttle": (5, 0)},
                        R.GLOBAL_THROTTLE),
    "not ready": ({}, (BUY, 10100, 10), {"ready": 0}, R.NOT_READY),
}


@pytest.mark.parametrize("name", CASES)
def test_each_reason_is_rejected_logged_and_counted(name):
    limits, (side, price, qty), extra, expected = CASES[name]
    s = ready_slot(**limits)
    config = {k: extra[k] for k in ("slot_throttle", "global_throttle") if k in extra}
    if config:
        s.set(**config).idle(3)
    items = {k: v for k, v in extra.items() if k not in config and k != "ready"}
    s.intent(SLOT, side, price, qty, **items)
    if "ready" in extra:                 # read in the decision cycle, two later
        s.add()
        s.add(ready=extra["ready"])
    run, _ = run_both(s)
    assert reasons(run) == [expected]
    assert run.counters[expected.name.lower()] == 1 and run.counters["passes"] == 0
    assert run.log[0][0]["quantity"] == qty and run.orders == []


def test_the_collar_bounds_are_inclusive():
    s = ready_slot(collar_bps=100)              # ask 10100 -> 10201; bid 10000 -> 9900
    s.intent(SLOT, BUY, 10201, 1)
    s.intent(SLOT, SELL, 9900, 1)
    run, _ = run_both(s)
    assert len(run.orders) == 2


def test_a_bad_slot_and_a_missing_bbo_are_rejected():
    s = ready_slot()
    s.intent(P.symbols + SLOT, BUY, 10100, 1)               # beyond the tables
    s.update(SLOT, 10000, 10100, ask_shares=0)              # no ask: buys have no reference
    s.intent(SLOT, BUY, 10100, 1)
    s.intent(SLOT, SELL, 10000, 1)
    s.limits(5)                                             # never had a BookUpdate
    s.intent(5, SELL, 10000, 1)
    run, _ = run_both(s)
    assert reasons(run) == [R.BAD_SLOT, R.NO_REFERENCE, R.NO_REFERENCE]
    assert len(run.orders) == 1


def test_a_changed_collar_waits_for_the_next_bbo():
    s = ready_slot(collar_bps=100)
    s.limits(SLOT, collar_bps=200)
    s.intent(SLOT, BUY, 10100, 1)                            # reference made with 100 bps
    s.update(SLOT, 10000, 10100)
    s.intent(SLOT, BUY, 10302, 1)                            # 10100 * 1.02 = 10302
    run, _ = run_both(s)
    assert reasons(run) == [R.NO_REFERENCE] and len(run.orders) == 1


def test_a_bookupdate_is_the_reference_four_cycles_later():
    s = ready_slot(collar_bps=0)
    u = s.add(update=dict(slot=SLOT, bid_price=10000, bid_shares=1, ask_price=10200,
                          ask_shares=1))
    while s.now < u + UPDATE_DELAY_CYCLES - 1:
        s.add()
    early = s.intent(SLOT, BUY, 10200, 1)                   # still the old ask (10100)
    late = s.intent(SLOT, BUY, 10200, 1)
    run, _ = run_both(s)
    assert early - u == UPDATE_DELAY_CYCLES - 1 and late - u == UPDATE_DELAY_CYCLES == 4
    assert reasons(run) == [R.COLLAR] and run.orders[0][0] == late + RISK_LATENCY_CYCLES


def test_host_limits_apply_to_intents_five_cycles_after_the_strobe():
    s = ready_slot(slot=SLOT)
    s.update(6, 10000, 10100)                    # made with slot 6's collar as it is: 0 bps
    h = s.add(limits=dict(index=6, enabled=1, max_quantity=10, max_notional=10**9,
                          collar_bps=0, position_limit=10))
    s.add()
    s.intent(6, BUY, 10100, 1)                   # h + 2: not yet
    s.intent(6, BUY, 10100, 1)                   # h + 3: not yet
    s.intent(6, BUY, 10100, 1)                   # h + 4: not yet
    s.intent(6, BUY, 10100, 1)                   # h + 5: the limits are there
    s.limits(7, collar_bps=50)
    s.update(7, 10000, 10100)                    # scaled with the collar just written
    s.intent(7, BUY, 10100, 1)
    run, _ = run_both(s)
    assert HOST_OP_CYCLES == 4
    assert reasons(run) == [R.DISABLED] * 3
    assert run.orders[0][0] - h == 5 + RISK_LATENCY_CYCLES
    assert len(run.orders) == 2


def test_back_to_back_intents_on_one_slot_see_each_others_open_quantity():
    s = ready_slot(position_limit=250)
    for _ in range(3):
        s.intent(SLOT, BUY, 10100, 100)
    s.intent(SLOT, SELL, 10000, 250)                         # sells have their own room
    s.intent(SLOT, SELL, 10000, 1)
    run, _ = run_both(s)
    assert reasons(run) == [R.POSITION, R.POSITION] and len(run.orders) == 3


def test_back_to_back_intents_share_the_buckets():
    s = ready_slot()
    s.set(slot_throttle=(10, 2), global_throttle=(0, 4)).idle(3)
    for _ in range(3):
        s.intent(SLOT, BUY, 10100, 1)                        # two tokens: the third waits
    s.idle(8)
    s.intent(SLOT, BUY, 10100, 1)                            # 10 cycles on: one token back
    s.intent(SLOT, BUY, 10100, 1)
    s.set(slot_throttle=(0, 8), global_throttle=(4, 3)).idle(30)
    for _ in range(4):
        s.intent(SLOT, BUY, 10100, 1)                        # the gate's bucket: 3 in a burst
    s.idle(2)
    s.intent(SLOT, BUY, 10100, 1)                            # 4 cycles after the third
    run, _ = run_both(s)
    assert reasons(run) == [R.SLOT_THROTTLE, R.SLOT_THROTTLE, R.GLOBAL_THROTTLE]
    assert len(run.orders) == 2 + 1 + 3 + 1


def test_fills_posted_against_a_burst_of_intents_are_never_lost():
    s = ready_slot(position_limit=100)
    s.add(set_position=dict(index=SLOT, position=-20))
    s.idle(4)
    # Fills collide with intents on the same slot, cycle for cycle.
    s.intent(SLOT, BUY, 10100, 60)                          # 60 open: -20 + 60 + 60 <= 100
    s.intent(SLOT, BUY, 10100, 60, fill=dict(index=SLOT, side=BUY, filled=50, released=10))
    s.intent(SLOT, BUY, 10100, 60)                          # 180 > room 120: the fill is not
                                                            # there yet (and would not do)
    s.idle(3)                                               # the fill is seen 5 cycles on
    # Room is now 100 - (-20 + 50) + 60 = 130 for 120 open: 10 more fit.
    s.intent(SLOT, BUY, 10100, 10, fill=dict(index=SLOT, side=SELL, filled=5, released=0))
    s.idle(8)
    s.add(read_request=SLOT)
    s.idle(6)
    run, model = run_both(s)
    assert reasons(run) == [R.POSITION]
    (_, back), = run.readbacks
    # Position -20 + 50 - 5; open buy 60 + 60 + 10 - 60; the sell fill had nothing open.
    assert back == {"index": SLOT, "position": 25, "open_buy": 70, "open_sell": -5}
    assert len(run.orders) == 3


def test_kill_switch_bound_reason_and_clear():
    s = ready_slot()
    s.set(slot_throttle=(0, 100), global_throttle=(0, 100)).idle(3)
    for _ in range(4):
        s.intent(SLOT, BUY, 10100, 1)
    k = s.intent(SLOT, BUY, 10100, 1, kill=1)
    for _ in range(4):
        s.intent(SLOT, BUY, 10100, 1)
    s.add(clear_kill=1)
    s.intent(SLOT, BUY, 10100, 1)
    run, _ = run_both(s)
    assert KILL_BOUND_CYCLES == 1
    valid = [c for c, _ in run.orders]
    assert not [c for c in valid if k + KILL_BOUND_CYCLES <= c <= k + 6]
    assert k in valid                  # decided in the cycle before the strobe
    assert run.killed[k] == 0 and all(run.killed[k + 1:k + 6])
    # The intent deciding in the strobe's cycle (valid at k - 1) is rejected already.
    assert reasons(run) == [R.KILLED] * 6
    assert run.alarms["killed"] == 1 and run.kill_reason == KillReason.NONE.value
    assert len(run.orders) == 3 + 1


def test_reject_rate_kills_and_says_why():
    s = ready_slot(max_quantity=5)
    s.set(auto_kill=(3, 20))
    for _ in range(2):
        s.intent(SLOT, BUY, 10100, 10)                       # QUANTITY
    s.idle(20)                                               # the window has moved on
    for _ in range(3):
        s.intent(SLOT, BUY, 10100, 10)
    s.idle(1)
    s.intent(SLOT, BUY, 10100, 1)
    s.intent(SLOT, BUY, 10100, 1)
    run, model = run_both(s)
    assert run.kill_reason == KillReason.REJECT_RATE.value
    assert reasons(run)[-2:] == [R.KILLED, R.KILLED]
    assert run.counters["quantity"] == 5 and run.orders == []


def test_not_ready_orders_are_rejected_and_lost_ones_counted():
    s = ready_slot()
    s.set(slot_throttle=(0, 10), global_throttle=(0, 10)).idle(3)
    x = s.intent(SLOT, BUY, 10100, 1)
    a = s.intent(SLOT, BUY, 10100, 1)
    s.add(ready=0)                                          # x's decision cycle
    s.add()                                                 # a's: it passes
    lost = s.add(ready=0)                                   # the encoder broke the contract
    run, _ = run_both(s)
    assert x + 2 == a + 1 == lost - 2
    assert reasons(run) == [R.NOT_READY] and [c for c, _ in run.orders] == [lost]
    assert lost == a + RISK_LATENCY_CYCLES
    assert run.counters["orders_lost"] == 1 and run.alarms["order_lost"] == 1


def test_reject_log_overflow_and_host_queue_overflow_are_counted():
    s = ready_slot()
    s.set(armed=0)
    for _ in range(P.log_depth + 3):
        s.intent(SLOT, BUY, 10100, 1)
    for k in range(P.host_depth + 3):
        s.add(read_request=k % P.symbols)
    s.add(read_request=1, fill=dict(index=1, side=BUY, filled=0, released=0))
    s.idle(HOST_OP_CYCLES * (P.host_depth + 4))
    run, _ = run_both(s)
    assert len(run.log) == P.log_depth and run.counters["log_overflow"] == 3
    # Reads every cycle outrun the engine (one per 4 cycles) and fill its 4-entry queue; the
    # cycle with two strobes loses one more.
    assert run.counters["host_overflow"] >= 2 and run.alarms["host_overflow"] == 1
    assert len(run.readbacks) == P.host_depth + 3 - (run.counters["host_overflow"] - 1)
    assert run.alarms["log_overflow"] == 1


def test_alarms_clear():
    s = ready_slot()
    s.add(kill=1)
    s.add(clear_kill=1)
    s.add(clear_alarms=1)
    run, _ = run_both(s)
    assert run.alarms == {"killed": 0, "log_overflow": 0, "host_overflow": 0,
                          "order_lost": 0}


def test_register_declarations_resolve():
    gate = describe_only(RiskGate(P))
    regs = RegisterMap([Block("risk", gate, gate.registers)])
    assert regs["risk.rejects"].overflow == "risk.counters.log_overflow"
    assert regs["risk.limits"].kind == "strobe" and regs["risk.limits"].words > 1
    names = {f.name for f in regs["risk.limits"].fields}
    assert {"write", "index"} <= names and any(n.startswith("entry") for n in names)
    assert regs["risk.killed"].access == "ro"
    for r in REASONS:
        assert f"risk.counters.{r.name.lower()}" in regs.by_name
