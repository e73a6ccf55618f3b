"""Unit tier: the order encoder in Amaranth's simulator, frame by frame against the reference
model (`tickwire.sim.ouch`), scapy and the OUCH 5.0 specification's table."""

import dataclasses

import pytest
from test_order_model import check_order_frame

from tickwire.hdl.order.encoder import (
    FRAME_BEATS,
    HISTOGRAM_BINS,
    KILL_BOUND_CYCLES,
    OrderEncoder,
)
from tickwire.hdl.platform.device import describe_only
from tickwire.hdl.platform.registers import Block, RegisterMap
from tickwire.sim.order_run import load_value, run_encoder
from tickwire.sim.ouch import EncoderModel, Template

SYMBOLS = {0: b"AAPL", 1: b"MSFT", 2: b"QQQ", 5: b"BRK A", 15: b"ZVZZT"}


def intent(k, **fields):
    base = dict(slot=list(SYMBOLS)[k % len(SYMBOLS)], locate=100 + k, side=k % 2,
                tif=(k // 2) % 2, strategy=k % 16, quantity=100 * (k + 1),
                price=1_234_500 + 97 * k, sequence=5000 + k, arrival=0)
    return base | fields


def check_against_model(run, intents, template, *, sequence=0, user_ref=1, ip_id=0):
    """Every log entry against the model, in order; every sent entry's frame byte for byte
    and through scapy and the spec's table. Returns the model."""
    model = EncoderModel(template, SYMBOLS, tcp_sequence=sequence, user_ref_num=user_ref,
                         ip_id=ip_id)
    by_sequence = {i["sequence"]: i for i in intents}
    assert [e["sequence"] for e in run.log] == [i["sequence"] for i in intents], \
        "the log accounts for every order, once, in order"
    frames = iter(run.frames)
    for entry in run.log:
        order = by_sequence[entry["sequence"]]
        for name in ("slot", "locate", "side", "tif", "strategy", "quantity", "price",
                     "arrival"):
            assert entry[name] == order[name], name
        if entry["sent"]:
            ip_id = model.ip_id
            expected, expected_entry = model.send(order)
            sent = next(frames)
            assert sent.frame == expected
            assert sent.gaps == 0 and sent.last - sent.presented >= FRAME_BEATS - 1
            assert entry["at"] == sent.taken
            check_order_frame(sent.frame, template, SYMBOLS[order["slot"]], side=order["side"],
                              quantity=order["quantity"], price=order["price"],
                              tif=order["tif"], tcp_sequence=expected_entry.tcp_sequence,
                              user_ref_num=expected_entry.user_ref_num, ip_id=ip_id)
        else:
            expected_entry = model.flush(order)
        assert (entry["sent"], entry["user_ref_num"], entry["tcp_sequence"], entry["length"]) \
            == (expected_entry.sent, expected_entry.user_ref_num, expected_entry.tcp_sequence,
                expected_entry.length)
    assert next(frames, None) is None, "every frame is in the log"
    assert run.next_sequence == model.tcp_sequence and run.next_user_ref == model.user_ref_num
    return model


def test_frames_match_the_model_and_scapy_and_sequence_numbers_advance_by_50():
    template = Template(ack=0xDEADBEEF, window=1234, ttl=7)
    intents = [intent(k) for k in range(6)]
    run = run_encoder(intents, template=template, symbols=SYMBOLS, sequence=0xFFFFFF00,
                      user_ref=41)
    check_against_model(run, intents, template, sequence=0xFFFFFF00, user_ref=41)
    assert [e["tcp_sequence"] for e in run.log] == [(0xFFFFFF00 + 50 * k) % 2**32
                                                    for k in range(6)]
    assert [e["user_ref_num"] for e in run.log] == list(range(41, 47))
    assert run.counters["frames"] == 6 and run.counters["orders"] == 6


def test_first_beat_is_presented_the_cycle_an_order_arrives_at_an_idle_encoder():
    intents = [intent(0), intent(1)]
    run = run_encoder(intents, template=Template(), symbols=SYMBOLS, arrivals=[20, 60])
    assert run.accepted == [20, 60]
    assert [s.presented for s in run.frames] == [20, 60]
    assert [s.last for s in run.frames] == [20 + FRAME_BEATS - 1, 60 + FRAME_BEATS - 1]


def test_frames_follow_back_to_back_with_no_idle_cycle():
    intents = [intent(k) for k in range(8)]
    run = run_encoder(intents, template=Template(), symbols=SYMBOLS)
    check_against_model(run, intents, Template())
    starts = [s.presented for s in run.frames]
    assert starts == [FRAME_BEATS * k for k in range(8)]
    # the queue held the burst: `ready` dropped only while it was full
    assert run.accepted[:5] == [0, 1, 2, 3, 4]


def test_mac_back_pressure_holds_beats():
    pattern = [1, 0, 0, 1, 1, 0, 1]
    intents = [intent(k) for k in range(5)]
    run = run_encoder(intents, template=Template(), symbols=SYMBOLS,
                      ready=lambda cycle: pattern[cycle % len(pattern)])
    check_against_model(run, intents, Template())
    assert run.counters["tx_stalls"] > 0
    assert all(s.last - s.presented > FRAME_BEATS - 1 for s in run.frames)


@pytest.mark.parametrize("kill_at", [3, 14, 27])
def test_kill_flushes_the_queue_and_lets_the_frame_on_the_wire_finish(kill_at):
    intents = [intent(k) for k in range(6)]
    run = run_encoder(intents, template=Template(), symbols=SYMBOLS,
                      arrivals=[0, 0, 0, 0, 0, kill_at + 5],
                      kill=lambda cycle: kill_at <= cycle < kill_at + 40)
    check_against_model(run, intents, Template())
    sent = [e for e in run.log if e["sent"]]
    flushed = [e for e in run.log if not e["sent"]]
    assert len(sent) == kill_at // FRAME_BEATS + 1
    assert all(s.presented < kill_at for s in run.frames)
    assert max(s.last for s in run.frames) <= kill_at + KILL_BOUND_CYCLES
    assert len(flushed) == len(intents) - len(sent) and run.counters["flushed"] == len(flushed)
    assert all(e["at"] >= kill_at for e in flushed)


def test_a_frame_held_by_the_mac_is_logged_before_the_orders_flushed_behind_it():
    intents = [intent(k) for k in range(3)]
    run = run_encoder(intents, template=Template(), symbols=SYMBOLS,
                      ready=lambda cycle: cycle >= 10, kill=lambda cycle: 2 <= cycle < 50)
    check_against_model(run, intents, Template())
    assert [e["sent"] for e in run.log] == [1, 0, 0]
    assert (run.frames[0].presented, run.frames[0].taken, run.log[0]["at"]) == (0, 10, 10)


def test_orders_after_a_kill_is_released_are_sent_with_the_next_numbers():
    intents = [intent(k) for k in range(4)]
    run = run_encoder(intents, template=Template(), symbols=SYMBOLS, arrivals=[0, 0, 40, 40],
                      kill=lambda cycle: 5 <= cycle < 30)
    check_against_model(run, intents, Template())
    assert [e["sent"] for e in run.log] == [1, 0, 1, 1]
    assert [e["user_ref_num"] for e in run.log] == [1, 2, 2, 3]


def test_hold_defers_frames_without_flushing():
    intents = [intent(k) for k in range(3)]
    run = run_encoder(intents, template=Template(), symbols=SYMBOLS,
                      hold=lambda cycle: cycle < 50)
    check_against_model(run, intents, Template())
    assert [s.presented for s in run.frames] == [50, 63, 76]


def test_a_template_change_takes_effect_between_frames_and_never_inside_one():
    old = Template()
    new = dataclasses.replace(old, ack=0x10000, window=77, dst_ip=0x0A0000FD,
                              clordid_prefix=b"NEWPFX", src_port=50001)
    intents = [intent(k) for k in range(6)]
    run = run_encoder(intents, template=old, symbols=SYMBOLS, updates=[(20, new)])
    model_old = EncoderModel(old, SYMBOLS)
    model_new = EncoderModel(new, SYMBOLS)
    which = []
    for order, sent in zip(intents, run.frames, strict=True):
        a, _ = model_old.send(order)
        b, _ = model_new.send(order)
        assert sent.frame in (a, b)
        which.append(sent.frame == b)
    # frames started before the write use the old template, the rest the new one
    assert which == [False, False, True, True, True, True]
    gap = run.frames[2].presented - run.frames[1].last
    assert gap > 1, "the encoder waits for the new template's checksums"


def test_no_frame_leaves_before_the_host_loads_a_template():
    run = run_encoder([intent(0)], template=Template(), symbols=SYMBOLS, load_template=False,
                      updates=[(50, Template())])
    check_against_model(run, [intent(0)], Template())
    assert run.frames[0].presented > 50


def test_loads_set_the_next_sequence_and_user_ref():
    intents = [intent(k) for k in range(3)]
    run = run_encoder(intents, template=Template(), symbols=SYMBOLS, arrivals=[0, 30, 30],
                      strobes={20: {"load_sequence": load_value(777),
                                    "load_user_ref": load_value(1000)}})
    assert [(e["tcp_sequence"], e["user_ref_num"]) for e in run.log] == \
        [(0, 1), (777, 1000), (827, 1001)]
    assert run.next_sequence == 877 and run.next_user_ref == 1002


def test_latency_statistics_and_histogram_follow_the_log():
    base, shift = 10, 2
    intents = [intent(k, arrival=max(0, 3 * k - 5 * (k % 3))) for k in range(12)]
    run = run_encoder(intents, template=Template(), symbols=SYMBOLS,
                      arrivals=[4 * k for k in range(12)], bins=(base, shift))
    latencies = [e["at"] - e["arrival"] for e in run.log if e["sent"]]
    assert len(latencies) == 12
    assert run.latency == {"count": 12, "min": min(latencies), "max": max(latencies),
                           "sum": sum(latencies)}
    expected = [0] * (HISTOGRAM_BINS + 2)
    for latency in latencies:
        if latency < base:
            expected[0] += 1
        else:
            expected[min((latency - base) >> shift, HISTOGRAM_BINS) + 1] += 1
    assert run.histogram == expected
    assert len({b for b, n in enumerate(expected) if n}) > 3, "the test spreads over bins"


def test_clear_latency_empties_the_statistics():
    intents = [intent(k, arrival=0) for k in range(3)]
    run = run_encoder(intents, template=Template(), symbols=SYMBOLS, arrivals=[0, 0, 80],
                      strobes={60: {"clear_latency": 1}})
    assert run.latency == {"count": 1, "min": 80, "max": 80, "sum": 80}
    assert sum(run.histogram) == 1


def test_a_full_log_counts_what_it_loses():
    dut = OrderEncoder(slots=16, log_depth=4)
    intents = [intent(k) for k in range(9)]
    run = run_encoder(intents, template=Template(), symbols=SYMBOLS, dut=dut,
                      log_ready=lambda cycle: cycle > 150)
    assert len(run.frames) == 9
    assert run.counters["log_overflow"] == 9 - len(run.log) > 0
    assert run.latency["count"] == 9, "statistics do not depend on the log being drained"


def test_register_declarations_resolve_against_the_ports():
    dut = describe_only(OrderEncoder(slots=64))
    regs = RegisterMap([Block("order", dut, dut.registers)])
    names = {r.name for r in regs}
    for name in ("template", "session", "hold", "symbol", "load_sequence", "load_user_ref",
                 "clear_latency", "next_sequence", "next_user_ref", "latency", "histogram.below",
                 "histogram.above", "log", "counters.frames", "counters.flushed",
                 "counters.log_overflow"):
        assert f"order.{name}" in names
    assert regs["order.log"].overflow == "order.counters.log_overflow"
    assert len([r for r in regs if r.name.startswith("order.histogram.bin")]) == HISTOGRAM_BINS
    assert regs["order.log"].words == 12
