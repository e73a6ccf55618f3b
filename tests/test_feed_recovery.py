"""Gap recovery by re-request (``recover`` set): the MoldUDP64 stage holds its expected sequence
number on a gap, raises one GAP notice, and delivers the host's retransmitted packets, then the
live lines again. Amaranth's simulator against the reference model, and against the sent
messages themselves: every message delivered once, in order."""

from tickwire.hdl.feed.events import NoticeKind
from tickwire.sim import moldudp64 as mold
from tickwire.sim.amaranth_sim import run_feed_handler

from feed_cases import FILTERS, add, assert_matches_model, packet_frame

ON = 0b01                   # recovery on feed 0 only


def run(frames, recover=ON):
    result = run_feed_handler(frames, FILTERS, recover=recover)
    model = assert_matches_model(result, frames, recover=recover)
    return result, model


def refs(result):
    return [e["order_ref"] for e in result.events]


def gaps(result):
    return [(n["sequence"], n["value"]) for n in result.notices
            if n["kind"] == NoticeKind.GAP.value]


def both(messages, sequence):
    return [packet_frame(messages, sequence), packet_frame(messages, sequence, line=1)]


def test_a_loss_on_both_lines_is_held_then_filled_by_the_retransmission():
    # Packet 2 is lost on both lines; packet 3 (both copies) is held, not skipped.
    live = [*both([add(1)], 1), *both([add(3)], 3)]
    result, model = run(live)
    assert refs(result) == [1] and gaps(result) == [(2, 1)]
    assert result.counters["mold"]["held_packets"] == 2
    assert model.expected[0] == 2 and model.recover_to[0] == 4
    # The host re-requests 2..3 (one packet), then the live lines go on with 4.
    result, model = run([*live, packet_frame([add(2), add(3)], 2), *both([add(4)], 4)])
    assert refs(result) == [1, 2, 3, 4]
    assert gaps(result) == [(2, 1)]                       # once per episode
    assert result.counters["mold"]["duplicate_messages"] == 2     # line B: 1 and 4
    assert model.expected[0] == 5


def test_held_packets_raise_no_further_notice_until_a_message_is_delivered():
    frames = [packet_frame([add(1)], 1), packet_frame([add(4)], 4),     # held: notice
              packet_frame([add(6)], 6),                                # held: no notice
              packet_frame([add(k) for k in range(2, 7)], 2),           # the re-request
              packet_frame([add(7)], 7),                                # live again
              packet_frame([add(9)], 9)]                                # a new gap: a notice
    result, model = run(frames)
    assert refs(result) == [1, 2, 3, 4, 5, 6, 7]
    assert gaps(result) == [(2, 2), (8, 1)]
    assert result.counters["mold"]["held_packets"] == 3
    assert model.recover_to[0] == 10


def test_a_partial_retransmission_ends_the_episode():
    frames = [packet_frame([add(1)], 1), packet_frame([add(4)], 4),
              packet_frame([add(2)], 2),                    # delivers 2: the episode ends
              packet_frame([add(5)], 5)]                    # still ahead: a new notice
    result, model = run(frames)
    assert refs(result) == [1, 2] and gaps(result) == [(2, 2), (3, 2)]
    assert model.recover_to[0] == 6


def test_recovery_off_skips_the_gap_as_before():
    live = [*both([add(1)], 1), *both([add(3)], 3)]
    result, _ = run(live, recover=0)
    assert refs(result) == [1, 3] and gaps(result) == [(2, 1)]
    assert result.counters["mold"]["held_packets"] == 0


def test_a_held_end_of_session_ends_the_session_once_recovered():
    eos = packet_frame([], 3, count=mold.END_OF_SESSION_COUNT)
    frames = [packet_frame([add(1)], 1), eos, packet_frame([add(2)], 2), eos]
    result, _ = run(frames)
    assert refs(result) == [1, 2]
    kinds = [n["kind"] for n in result.notices if n["kind"] in (NoticeKind.GAP.value,
                                                                 NoticeKind.END_OF_SESSION.value)]
    assert kinds == [NoticeKind.GAP.value, NoticeKind.END_OF_SESSION.value]
    assert result.counters["mold"]["end_of_session"] == 1


def test_recovery_is_per_feed():
    other = FILTERS[2].port
    frames = [packet_frame([add(1)], 1), packet_frame([add(3)], 3),
              packet_frame([add(11)], 1, port=other), packet_frame([add(13)], 3, port=other)]
    result, _ = run(frames)
    assert refs(result) == [1, 11, 13]                    # feed 1 skips, feed 0 holds
    assert [(n["feed"], n["sequence"]) for n in result.notices] == [(0, 2), (1, 2)]


# The Verilated feed path with a host that re-requests: random loss on both lines --------------

import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tickwire.sim.verilated_feed import VerilatedFeedHandler  # noqa: E402


@pytest.fixture(scope="module")
def verilated():
    handler = VerilatedFeedHandler()
    handler.configure(FILTERS)
    handler.harness.set("recover", ON)
    return handler


def feed0(handler, port):
    return handler.harness.get(port) & (2**64 - 1)


@st.composite
def lossy_session(draw):
    """Packets of 1-8 messages on lines A and B, each copy lost with probability about 1/4, a
    heartbeat on both lines at the end (it reveals a loss of the last packets)."""
    total = draw(st.integers(1, 80))
    packets, sequence = [], 1
    while sequence <= total:
        size = min(draw(st.integers(1, 8)), total - sequence + 1)
        packets.append((sequence, size))
        sequence += size
    lost = draw(st.lists(st.booleans() | st.just(False), min_size=2 * len(packets),
                         max_size=2 * len(packets)))
    sizes = draw(st.lists(st.integers(1, 12), min_size=1, max_size=8))
    return total, packets, lost, sizes


@settings(max_examples=300, deadline=None)
@given(session=lossy_session())
def test_random_loss_on_both_lines_is_recovered_exactly(verilated, session):
    total, packets, lost, sizes = session
    messages = [add(k) for k in range(1, total + 1)]
    live = []
    for index, (first, size) in enumerate(packets):
        for line in (0, 1):
            if not lost[2 * index + line]:
                live.append(packet_frame(messages[first - 1:first - 1 + size], first, line=line,
                                         idle_after=2))
    live += [packet_frame([], total + 1, count=mold.HEARTBEAT_COUNT, line=line, idle_after=2)
             for line in (0, 1)]
    for f in range(verilated.dut.feeds):
        verilated.resync(f)
    before = verilated.counters()
    presented, events, notices, rounds = list(live), [], [], 0
    result = verilated.run(live)
    while True:
        events += result.events
        notices += result.notices
        expected, target = feed0(verilated, "next_sequence"), feed0(verilated, "recover_to")
        if expected >= target:
            break
        # The host's re-request: from the expected number, as many as the server sends.
        count = min(sizes[rounds % len(sizes)], target - expected)
        retransmission = packet_frame(messages[expected - 1:expected - 1 + count], expected,
                                      idle_after=2)
        presented.append(retransmission)
        result = verilated.run([retransmission])
        rounds += 1
    assert [e["sequence"] for e in events] == list(range(1, total + 1))
    assert [e["order_ref"] for e in events] == list(range(1, total + 1))
    gap_notices = [n for n in notices if n["kind"] == NoticeKind.GAP.value]
    assert len(gap_notices) <= 1 and (rounds == 0) == (not gap_notices)
    # And stream for stream, counter for counter, the reference model on the same frames.
    combined = type(result)(events, notices, {
        group: {k: v for k, v in values.items()}
        for group, values in verilated.counters().items() if group in ("udp", "mold", "itch")},
        [], 0, 0)
    assert_matches_model(combined, presented, counters_before=before, recover=ON)
