"""Property tests of the order encoder: random intents, templates, MAC back-pressure, kills
and holds.

For every run: each frame is the model's frame for its order (and reads right in scapy and
the spec's table), its beats are back to back, no first beat is presented while ``kill`` is
high (or ``hold`` set), the log accounts for every order once and in order with session
numbers continuous, and the counters and latency statistics agree with the log."""

from hypothesis import event, given, settings
from hypothesis import strategies as st
from test_order_model import templates
from test_order_unit import SYMBOLS, check_against_model

from tickwire.hdl.order.encoder import FRAME_BEATS
from tickwire.sim.order_run import run_encoder

intents = st.lists(st.fixed_dictionaries({
    "slot": st.sampled_from(sorted(SYMBOLS)), "locate": st.integers(0, 65535),
    "side": st.integers(0, 1), "tif": st.integers(0, 1), "strategy": st.integers(0, 15),
    "quantity": st.integers(0, 2**32 - 1), "price": st.integers(0, 2**32 - 1),
    "arrival": st.one_of(st.integers(0, 200), st.integers(0, 2**64 - 1)),
}), min_size=1, max_size=10)


@settings(max_examples=40)
@given(orders=intents, template=templates, gaps=st.lists(st.integers(0, 25), min_size=10,
                                                         max_size=10),
       pattern=st.lists(st.booleans(), min_size=1, max_size=12).filter(any),
       kills=st.lists(st.tuples(st.integers(0, 150), st.integers(1, 40)), max_size=2),
       holds=st.lists(st.tuples(st.integers(0, 150), st.integers(1, 30)), max_size=2),
       sequence=st.integers(0, 2**32 - 1), user_ref=st.integers(0, 2**32 - 1))
def test_every_frame_valid_every_order_logged(orders, template, gaps, pattern, kills, holds,
                                              sequence, user_ref):
    orders = [o | {"sequence": 7000 + k} for k, o in enumerate(orders)]
    arrivals, at = [], 0
    for gap in gaps[:len(orders)]:
        at += gap
        arrivals.append(at)

    def killed(cycle):
        return any(start <= cycle < start + length for start, length in kills)

    def held(cycle):
        return any(start <= cycle < start + length for start, length in holds)

    def ready(cycle):
        return pattern[cycle % len(pattern)]

    run = run_encoder(orders, template=template, symbols=SYMBOLS, arrivals=arrivals,
                      ready=ready, kill=killed, hold=held, sequence=sequence, user_ref=user_ref)
    check_against_model(run, orders, template, sequence=sequence, user_ref=user_ref)

    for sent in run.frames:
        assert not killed(sent.presented), "no frame starts while kill is high"
        assert not held(sent.presented), "no frame starts while hold is set"
        stalls = sum(not ready(c) for c in range(sent.presented, sent.last + 1))
        assert sent.last - sent.presented == FRAME_BEATS - 1 + stalls
    sent = [e for e in run.log if e["sent"]]
    flushed = [e for e in run.log if not e["sent"]]
    assert all(killed(e["at"]) for e in flushed), "only kill flushes"
    event("some orders flushed" if flushed else "none flushed")
    event("MAC stalled a frame" if run.counters["tx_stalls"] else "no stall")
    assert run.counters == {"orders": len(orders), "frames": len(sent),
                            "flushed": len(flushed), "log_overflow": 0,
                            "tx_stalls": run.counters["tx_stalls"]}
    latencies = [min((e["at"] - e["arrival"]) % 2**64, 2**32 - 1) for e in sent]
    assert run.latency == {"count": len(sent), "min": min(latencies, default=2**32 - 1),
                           "max": max(latencies, default=0), "sum": sum(latencies)}
