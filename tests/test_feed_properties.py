"""Property tier: random feeds through the Verilated feed path, against the reference model."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwire.hdl.feed.itch_format import MESSAGES
from tickwire.sim import itch
from tickwire.sim.feed_run import Frame
from tickwire.sim.verilated_feed import VerilatedFeedHandler

from feed_cases import FILTERS, SESSION, assert_matches_model, packet_frame, patch_ip


@pytest.fixture(scope="module")
def feed():
    handler = VerilatedFeedHandler()
    handler.configure(FILTERS)
    return handler


def run_fresh(feed, frames):
    for f in range(feed.dut.feeds):
        feed.resync(f)
    before = feed.counters()
    return feed.run(frames), before


@st.composite
def message(draw):
    kind = draw(st.sampled_from(list(MESSAGES) * 3 + ["unknown", "short", "long"]))
    if kind in ("unknown", "long", "short"):
        base = itch.encode(b"A", order_ref=draw(st.integers(0, 2**64 - 1)), side=b"S")
        if kind == "unknown":
            return b"z" + draw(st.binary(min_size=11, max_size=60))
        return base[:-1] if kind == "short" else base + b"\0"
    spec = MESSAGES[kind]
    values = {}
    for field in spec.fields[1:]:
        if field.name == "side":
            values[field.name] = draw(st.sampled_from([b"B", b"S", b"B", b"S", b"X"]))
        elif field.kind in ("a", "c"):
            values[field.name] = draw(st.sampled_from([b"Y", b"N", b"AAPL", b"ZVZZT"]))[
                :field.length]
        else:
            values[field.name] = draw(st.integers(0, (1 << (8 * field.length)) - 1))
    return itch.encode(kind, **values)


@st.composite
def ab_session(draw):
    """Packets of one session sent on lines A and B with loss, duplication, reordering and
    corruption, at random alignments."""
    messages = draw(st.lists(message(), min_size=1, max_size=60))
    packets, sequence, position = [], 1, 0
    while position < len(messages):
        size = draw(st.integers(1, 12))
        packets.append((sequence, messages[position:position + size]))
        sequence += len(packets[-1][1])
        position += size
    copies = []
    for index, (seq, batch) in enumerate(packets):
        vlan = draw(st.none() | st.just(42))
        options = draw(st.sampled_from([0, 0, 4, 12, 40]))
        for line in draw(st.permutations([0, 1])):
            for _ in range(draw(st.sampled_from([1, 1, 1, 0, 2]))):   # loss or duplication
                frame = packet_frame(batch, seq, line=line, vlan=vlan, options=options,
                                     idle_after=draw(st.integers(0, 3)))
                damage = draw(st.sampled_from(["none"] * 8 + ["cut", "fcs", "checksum"]))
                if damage == "cut":
                    frame = frame._replace(data=frame.data[:draw(
                        st.integers(14, len(frame.data) - 1))])
                elif damage == "fcs":
                    frame = frame._replace(bad=True)
                elif damage == "checksum":
                    frame = patch_ip(frame, 10, 0x1234, 2, fix_checksum=False,
                                     ip_start=18 if vlan else 14)
                copies.append((index + draw(st.integers(0, 2)), len(copies), frame))
    return [frame for _, _, frame in sorted(copies)]   # bounded reordering


@settings(max_examples=1000)
@given(frames=ab_session())
def test_random_ab_feeds_match_the_model(feed, frames):
    run, before = run_fresh(feed, frames)
    assert_matches_model(run, frames, FILTERS, counters_before=before)
    assert all(latency == 3 for latency in run.latencies if latency is not None)


@settings(max_examples=300)
@given(frames=st.lists(st.binary(min_size=1, max_size=120).map(lambda b: Frame(b)),
                       max_size=6),
       tail=st.lists(message(), min_size=1, max_size=5))
def test_garbage_frames_never_make_events_and_never_stop_decoding(feed, frames, tail):
    good = packet_frame(tail, 1, session=SESSION)
    run, before = run_fresh(feed, [*frames, good])
    model = assert_matches_model(run, [*frames, good], FILTERS, counters_before=before)
    assert len(run.events) == len(model.events)
