"""Unit tier: the feed path in Amaranth's simulator, against the reference model."""

import pytest

from tickwire.hdl.feed.events import BookEventKind, NoticeKind
from tickwire.hdl.feed.handler import FEED_LATENCY_CYCLES
from tickwire.hdl.feed.itch_format import MESSAGES
from tickwire.sim import itch
from tickwire.sim import moldudp64 as mold
from tickwire.sim.amaranth_sim import run_feed_handler
from tickwire.sim.feed_run import Frame

from feed_cases import FILTERS, SESSION, add, assert_matches_model, packet_frame, patch_ip


def run_and_check(frames):
    run = run_feed_handler(frames, FILTERS)
    model = assert_matches_model(run, frames)
    return run, model


def one_of_each():
    values = {b"A": dict(side=b"S"), b"F": dict(side=b"B"), b"C": dict(printable=b"Y")}
    return [itch.encode(t, stock_locate=3, timestamp=i, **values.get(t, {}))
            for i, t in enumerate(MESSAGES)]


def test_every_message_type_is_recognised():
    messages = one_of_each()
    run, model = run_and_check([packet_frame(messages, 1)])
    assert all(v == 1 for k, v in run.counters["itch"].items() if k.startswith("type_"))
    kinds = [e["kind"] for e in run.events]
    assert kinds == [BookEventKind.ADD.value, BookEventKind.ADD.value,
                     BookEventKind.EXECUTE.value, BookEventKind.EXECUTE_AT_PRICE.value,
                     BookEventKind.CANCEL.value, BookEventKind.DELETE.value,
                     BookEventKind.REPLACE.value]
    assert [n["kind"] for n in run.notices] == [NoticeKind.SYSTEM_EVENT.value,
                                                NoticeKind.STOCK_DIRECTORY.value,
                                                NoticeKind.TRADING_ACTION.value]
    assert run.events[0]["side"] == 1 and run.events[3]["printable"] == 1


@pytest.mark.parametrize("vlan, options", [(None, 0), (7, 0), (None, 4), (7, 40)])
def test_every_alignment_at_three_cycles(vlan, options):
    """Messages of lengths 12..50 make messages start at every one of the 8 lanes."""
    messages = [m for _ in range(3) for m in one_of_each()]
    run, _ = run_and_check([packet_frame(messages, 1, vlan=vlan, options=options)])
    assert len(run.events) == 21
    assert set(run.latencies) == {FEED_LATENCY_CYCLES}


def test_back_to_back_minimum_messages():
    """Packets packed with the shortest messages, frames back to back with no idle cycle."""
    shortest = itch.encode(b"S", event_code=b"O")
    frames = [packet_frame([shortest] * 20 + [add(k)], 1 + 21 * k, idle_after=0)
              for k in range(4)]
    run, _ = run_and_check(frames)
    assert run.counters["itch"]["type_S"] == 80 and len(run.events) == 4


GOOD_AFTER = packet_frame([add(900), add(901)], 3)


def first_packet():
    return packet_frame([add(1), add(2)], 1)


def mold_frame(payload, **kw):
    from tickwire.sim.frames import udp_frame
    from tickwire.sim.scenario import FEED_GROUP_A, FEED_PORT
    return Frame(udp_frame(payload, dst_ip=FEED_GROUP_A, dst_port=FEED_PORT), **kw)


def truncated(frame, cut):
    return frame._replace(data=frame.data[:cut])


BAD_INPUT = {
    # name: (bad frames, counter group, counter, events expected from the bad frames)
    "ip checksum": ([patch_ip(first_packet(), 10, 0xBEEF, 2, fix_checksum=False)],
                    "udp", "ip_checksum_errors", 0),
    "ihl below 5": ([patch_ip(first_packet(), 0, 0x44)], "udp", "ip_header_errors", 0),
    "ip version 6": ([patch_ip(first_packet(), 0, 0x65)], "udp", "ip_header_errors", 0),
    "total length short": ([patch_ip(first_packet(), 2, 20, 2)], "udp", "ip_header_errors", 0),
    "fragment": ([patch_ip(first_packet(), 6, 0x2000, 2)], "udp", "ip_fragments", 0),
    "not udp": ([patch_ip(first_packet(), 9, 6)], "udp", "not_udp", 0),
    "not ipv4": ([Frame(first_packet().data[:12] + b"\x08\x06" + first_packet().data[14:])],
                 "udp", "not_ipv4", 0),
    "unmatched port": ([packet_frame([add(1), add(2)], 1, port=9)], "udp", "unmatched", 0),
    "truncated header": ([truncated(first_packet(), 30)], "udp", "truncated", 0),
    "truncated mid message": ([truncated(first_packet(), 42 + 20 + 38 + 20)], "mold",
                              "truncated", 1),
    "bad fcs": ([first_packet()._replace(bad=True)], "mold", "corrupt", 1),
    "message length zero": ([mold_frame(mold.encode_packet(SESSION, 1, [add(1)])
                                        + b"\0\0" + add(2), idle_after=4)], "mold",
                            "bad_length", 1),
    "message length too long": ([mold_frame(mold.encode_packet(SESSION, 1, [add(1)], count=2)
                                            + b"\x00\x40" + add(2), idle_after=4)],
                                "mold", "truncated", 1),
    "count too high": ([packet_frame([add(1), add(2)], 1, count=3)], "mold",
                       "count_mismatch", 2),
    "count too low": ([packet_frame([add(1), add(2)], 1, count=1)], "mold",
                      "count_mismatch", 1),
    "wrong session": ([first_packet(), packet_frame([add(7)], 3, session=b"OTHER")],
                      "mold", "wrong_session", 2),
    "unknown type": ([packet_frame([b"z" + bytes(20), add(2)], 1)], "itch", "unknown", 1),
    "known type wrong length": ([packet_frame([add(1)[:-1], add(2)], 1)], "itch",
                                "bad_message", 1),
    "bad side": ([packet_frame([add(1, side=b"Q"), add(2)], 1)], "itch", "bad_message", 1),
}


@pytest.mark.parametrize("name", BAD_INPUT)
def test_bad_input_is_counted_and_decoding_resumes(name):
    bad_frames, group, counter, events_from_bad = BAD_INPUT[name]
    run, _ = run_and_check([*bad_frames, GOOD_AFTER])
    assert run.counters[group][counter] >= 1
    good = {e["order_ref"] for e in run.events}
    assert {900, 901} <= good, "the next good packet decodes"
    assert len(run.events) - 2 == events_from_bad


def test_line_b_fills_line_a_loss_without_gap():
    a1, a3 = packet_frame([add(1)], 1), packet_frame([add(3)], 3)
    b1, b2, b3 = (packet_frame([add(k)], k, line=1) for k in (1, 2, 3))
    run, _ = run_and_check([a1, b1, b2, a3, b3])
    assert [e["order_ref"] for e in run.events] == [1, 2, 3]
    assert run.counters["mold"]["gaps"] == 0 and run.counters["mold"]["duplicate_packets"] == 2


def test_loss_on_both_lines_is_one_gap_notice():
    run, _ = run_and_check([packet_frame([add(1)], 1), packet_frame([add(5)], 5),
                            packet_frame([add(5)], 5, line=1)])
    gaps = [n for n in run.notices if n["kind"] == NoticeKind.GAP.value]
    assert [(g["sequence"], g["value"]) for g in gaps] == [(2, 3)]


def test_overlapping_retransmission_delivers_only_new_messages():
    run, _ = run_and_check([packet_frame([add(1), add(2)], 1),
                            packet_frame([add(1), add(2), add(3), add(4)], 1, line=1)])
    assert [e["order_ref"] for e in run.events] == [1, 2, 3, 4]
    assert run.counters["mold"]["duplicate_messages"] == 2


def test_heartbeat_reveals_gap_and_end_of_session_starts_a_new_one():
    frames = [packet_frame([add(1)], 1),
              Frame(mold_frame(mold.heartbeat(SESSION, 4)).data, idle_after=6),
              Frame(mold_frame(mold.end_of_session(SESSION, 4)).data, idle_after=6),
              packet_frame([add(9)], 4),                                  # after the end
              packet_frame([add(10)], 1, session=b"NEXTDAY001")]          # a new session
    run, _ = run_and_check(frames)
    c = run.counters["mold"]
    assert (c["heartbeats"], c["end_of_session"], c["after_end"], c["gaps"]) == (1, 1, 1, 1)
    assert [e["order_ref"] for e in run.events] == [1, 10]


def test_feeds_are_independent():
    frames = [packet_frame([add(1)], 1), packet_frame([add(2)], 7, port=FILTERS[2].port)]
    run, _ = run_and_check(frames)
    assert [e["feed"] for e in run.events] == [0, 1]
    assert [n["feed"] for n in run.notices] == [1]
