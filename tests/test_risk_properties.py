"""Property tier: random intents, BBOs, limits, fills, kills and readiness through the risk gate
in Amaranth's simulator. The gateware must equal `RiskModel` exactly, and an independent
checker, written from the rules (not from the model), must find that no order broke a limit,
a bucket, the armed flag or the kill switch, and that every intent is accounted for.

Limits, positions and the bucket configuration are written before the stream starts; during
it come intents, BookUpdates, fills and releases, reads, kill and clear strobes, arming and
disarming, and the encoder's readiness. (Fills only ever widen a slot's room, so the checker
may apply them the cycle they are posted: the gate, which sees them later, is stricter.)"""

from hypothesis import given, settings
from hypothesis import strategies as st

from tickwire.hdl.risk.gate import RISK_LATENCY_CYCLES, UPDATE_DELAY_CYCLES, RiskGate
from tickwire.hdl.risk.records import REASONS, RiskParameters
from tickwire.sim.risk_model import RiskModel
from tickwire.sim.risk_run import Script, intent, run_gate_sim

P = RiskParameters(symbols=8, log_depth=256, host_depth=8)
SLOTS = range(P.symbols)


@st.composite
def scenarios(draw):
    buckets = st.tuples(st.sampled_from([0, 0, 1, 3, 7]),
                        st.sampled_from([0, 1, 2, 3, 8, 50, 50, 50]))
    s = Script(armed=0, slot_throttle=draw(buckets), global_throttle=draw(buckets),
               auto_kill=(draw(st.sampled_from([0, 0, 0, 3, 12])),
                          draw(st.sampled_from([0, 8, 40]))))
    s.idle(2)
    limits = {}
    for slot in SLOTS:
        if draw(st.integers(0, 7)) == 0:
            continue                                        # never written: disabled
        limits[slot] = dict(
            enabled=draw(st.sampled_from([1, 1, 1, 1, 1, 0])),
            max_quantity=draw(st.sampled_from([100, 1000, 2**32 - 1])),
            max_notional=draw(st.sampled_from([10**6, 10**7, 2**64 - 1])),
            collar_bps=draw(st.sampled_from([0, 50, 200, 10000, 16383])),
            position_limit=draw(st.sampled_from([0, 150, 1000, 2**47])))
        s.limits(slot, **limits[slot], wait=3)
        if draw(st.booleans()):
            s.add(set_position=dict(index=slot, position=draw(st.integers(-300, 300))))
            s.idle(3)
    bbo = {}
    for slot in SLOTS:
        if draw(st.integers(0, 4)):
            bbo[slot] = (10000 + 10 * draw(st.integers(-3, 0)), 10000 + 10 * draw(
                st.integers(1, 3)))
            s.update(slot, *bbo[slot], bid_shares=draw(st.sampled_from([0, 100, 100])),
                     ask_shares=draw(st.sampled_from([0, 100, 100])), wait=0)
    s.idle(6)
    s.set(armed=1)
    start = s.now
    host_free = 0
    sequence = 1
    for _ in range(draw(st.integers(20, 160))):
        items = {}
        if draw(st.integers(0, 9)) < 7:
            slot = draw(st.sampled_from([*SLOTS, *SLOTS, P.symbols + 1]))
            ref = bbo.get(slot % P.symbols, (10000, 10010))
            side = draw(st.integers(0, 1))
            price = ref[side ^ 1] + draw(st.sampled_from([-30, -1, 0, 0, 1, 20, 25, 200, 2000]))
            items["intent"] = intent(
                slot=slot, side=side, price=max(price, 0), sequence=sequence,
                quantity=draw(st.sampled_from([0, 1, 10, 50, 50, 100, 101, 500, 1500])))
            sequence += 1
        if draw(st.integers(0, 6)) == 0:
            slot = draw(st.sampled_from(list(SLOTS)))
            bid = 10000 + 10 * draw(st.integers(-4, 0))
            bbo[slot] = (bid, bid + 10 * draw(st.integers(1, 4)))
            items["update"] = dict(slot=slot, bid_price=bbo[slot][0], ask_price=bbo[slot][1],
                                   bid_shares=draw(st.sampled_from([0, 5, 5, 5, 5, 5])),
                                   ask_shares=draw(st.sampled_from([0, 5, 5, 5, 5, 5])))
        if s.now >= host_free and draw(st.integers(0, 5)) == 0:
            slot = draw(st.sampled_from(list(SLOTS)))
            if draw(st.integers(0, 3)):
                items["fill"] = dict(index=slot, side=draw(st.integers(0, 1)),
                                     filled=draw(st.sampled_from([0, 10, 50, 100])),
                                     released=draw(st.sampled_from([0, 0, 20, 100])))
            else:
                items["read_request"] = slot
            host_free = s.now + 4                           # the bank's pace, and the engine's
        roll = draw(st.integers(0, 99))
        if roll < 1:
            items["kill"] = 1
        elif roll < 8:
            items["clear_kill"] = 1
        elif roll < 9:
            items["armed"] = draw(st.sampled_from([0, 1, 1]))
        if draw(st.integers(0, 9)) == 0:
            items["ready"] = 0
        s.add(**items)
    s.idle(8)
    return s, start


def check_rules(cycles, run, start):
    """From the rules alone: every order respected armed, kill, ready, quantity, notional,
    collar (against the BBO of `UPDATE_DELAY_CYCLES` before), position and buckets; every
    intent is counted once."""
    presented = {c.intent["sequence"]: (x, c.intent) for x, c in enumerate(cycles)
                 if c.intent is not None}
    counters = run.counters
    assert counters["intents"] == len(presented)
    assert counters["intents"] == counters["passes"] + sum(counters[r.name.lower()]
                                                          for r in REASONS)
    assert counters["passes"] == len(run.orders)
    assert len(run.log) + counters["log_overflow"] == counters["intents"] - counters["passes"]
    assert counters["host_overflow"] == 0
    limits, bbo, position, open_ = {}, {}, {}, {}
    for x, c in enumerate(cycles):                    # the setup: limits and positions
        if x < start and c.limits:
            limits[c.limits["index"]] = c.limits
        if x < start and c.set_position:
            position[c.set_position["index"]] = c.set_position["position"]
    kill_on, passes = False, {}
    orders = {o["sequence"]: v for v, o in run.orders}
    decided = {}
    for sequence, valid in orders.items():
        decided.setdefault(valid - 1, []).append(sequence)
    for x, c in enumerate(cycles):
        if c.kill:
            kill_on = True
        if c.update:
            bbo.setdefault(x + UPDATE_DELAY_CYCLES + RISK_LATENCY_CYCLES - 1, []).append(c.update)
        for u in bbo.pop(x, []):
            limits.setdefault(("bbo", u["slot"]), None)
            limits[("bbo", u["slot"])] = u
        if c.fill:
            f = c.fill
            slot, side = f["index"], f["side"]
            position[slot] = position.get(slot, 0) + (f["filled"] if side == 0
                                                      else -f["filled"])
            open_[slot, side] = open_.get((slot, side), 0) - f["filled"] - f["released"]
        for sequence in decided.get(x, []):
            at, intent = presented[sequence]
            assert x == at + RISK_LATENCY_CYCLES - 1
            assert c.armed and not c.kill and not kill_on and not run.killed[x]
            assert c.ready
            slot, side, qty, price = (intent["slot"], intent["side"], intent["quantity"],
                                      intent["price"])
            lim = limits[slot]
            assert lim["enabled"] and 0 < qty <= lim["max_quantity"]
            assert price * qty <= lim["max_notional"]
            ref = limits[("bbo", slot)]
            bps = lim["collar_bps"]
            if side == 0:
                assert ref["ask_shares"] and price * 10000 <= ref["ask_price"] * (10000 + bps)
            else:
                assert ref["bid_shares"] and price * 10000 >= ref["bid_price"] * max(
                    0, 10000 - bps)
            open_[slot, side] = open_.get((slot, side), 0) + qty
            worst = (position.get(slot, 0) if side == 0 else -position.get(slot, 0)) \
                + open_[slot, side]
            assert worst <= lim["position_limit"]
            passes.setdefault(slot, []).append(x)
            passes.setdefault("all", []).append(x)
        if c.clear_kill and not c.kill:
            kill_on = False
    # Buckets: in any span of decision cycles [a, b], at most burst + (b - a) // interval.
    for key, times in passes.items():
        interval, burst = cycles[start].global_throttle if key == "all" else \
            cycles[start].slot_throttle
        assert burst > 0
        for i, a in enumerate(times):
            for j in range(i, len(times)):
                allowed = burst + ((times[j] - a) // interval if interval else len(times))
                assert j - i + 1 <= allowed, (key, times)


@settings(max_examples=30)
@given(scenarios())
def test_gate_equals_model_and_keeps_every_rule(scenario):
    s, start = scenario
    cycles = s.cycles
    run = run_gate_sim(cycles, RiskGate(P))
    model = RiskModel(P).run(cycles)
    assert run.orders == model.orders
    assert run.log == model.log
    assert run.counters == model.counters
    assert run.alarms == model.alarms
    assert run.killed == model.killed_trace
    assert run.readbacks == model.readbacks
    check_rules(cycles, run, start)
