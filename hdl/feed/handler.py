"""The feed path: MAC rx -> Ethernet/IPv4/UDP -> MoldUDP64 -> ITCH 5.0 -> book events."""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.counters import count
from tickwire.hdl.feed.events import FeedNotice, NoticeKind
from tickwire.hdl.feed.itch import ItchDecoder, event_signature
from tickwire.hdl.feed.moldudp64 import MoldUdp64Receiver
from tickwire.hdl.net.mac import AxiStreamRx, mac_rx_signature
from tickwire.hdl.net.udp_rx import FilterEntry, UdpReceiver
from tickwire.hdl.platform.registers import Config, Counters, Fifo, Status, Strobe

FEED_LATENCY_CYCLES = 3


#: The host's view of `FeedHandler`'s ports: the register map, the bank, the driver and the
#: docs are generated from these (`tickwire.hdl.platform.device`).
FEED_REGISTERS = (
    Config("filters", "(multicast group, UDP port) -> (feed, line); an entry is used while "
           "`enable` is set"),
    Strobe("resync", "write 1 << feed: forget that feed's session and expected sequence"),
    Config("recover", "bit per feed: on a gap hold the expected sequence (packets beyond it "
           "are held, counted) until the host's re-requested packets fill it"),
    Strobe("clear_alarms", "write 1: clear the sticky alarms"),
    Status("alarms", "sticky alarms: integrity, gap, overflow"),
    Status("next_sequence", "per feed, the next expected MoldUDP64 sequence number"),
    Status("recover_to", "per feed, the sequence number after the last held packet: "
           "re-request until `next_sequence` reaches it"),
    Counters("counters", "32-bit wrapping event counter"),
    Fifo("notices", "host notices: gaps, end of session, S/R/H messages, malformed messages; "
         "a notice lost to a full FIFO is counted in `feed.counters.notice_overflow`",
         overflow="counters.notice_overflow"),
)


class Alarms(data.Struct):
    """Sticky until the host writes ``clear_alarms``."""
    integrity: 1   # a frame ended with the MAC's bad flag, or a message was dropped for it
    gap: 1         # a sequence gap on some feed
    overflow: 1    # a notice was lost because the host did not drain the notice FIFO


class FeedHandler(wiring.Component):
    """Turns market data frames into normalised book events, at line rate.

    ``UdpReceiver`` -> ``MoldUdp64Receiver`` -> ``ItchDecoder``, each a pipeline stage that
    never stalls: the MAC is never back-pressured, whatever the message mix, and ``events`` has
    no back-pressure either (a consumer that may stall puts a FIFO in front of itself). Host
    notices (gaps, end of session, system events, stock directory, trading actions, malformed
    messages) go through FIFOs, sequencing notices first; a notice arriving at a full FIFO is
    counted in ``notice_overflow`` and raises the ``overflow`` alarm.

    Ports
    -----
    rx : In(MacBeat stream, always ready)
    filters : In(FilterEntry array): (group, port) -> (feed, line)
    resync : In(feeds): forget a feed's session and sequence
    recover : In(feeds): gap recovery by re-request (see `MoldUdp64Receiver`)
    events : Out(BookEvent stream, always ready)
    notices : Out(FeedNotice stream)
    next_sequence : Out(per feed, next expected MoldUDP64 sequence number)
    recover_to : Out(per feed, re-request until ``next_sequence`` reaches it)
    counters : Out(``udp``, ``mold`` and ``itch`` counter groups and ``notice_overflow``)
    alarms : Out(Alarms), clear_alarms : In(1)

    Latency: 3 cycles from the cycle the last byte of a message is at ``rx`` to the cycle its
    event is valid on ``events`` (1 per stage), for every alignment and message size.
    """

    def __init__(self, *, feeds=4, filter_entries=8, notice_depth=256):
        self.feeds = feeds
        self.filter_entries = filter_entries
        self.notice_depth = notice_depth
        self.udp = UdpReceiver(filter_entries)
        self.mold = MoldUdp64Receiver(feeds)
        self.itch = ItchDecoder()
        self.registers = FEED_REGISTERS
        super().__init__({
            "rx": In(mac_rx_signature()),
            "filters": In(data.ArrayLayout(FilterEntry, filter_entries)),
            "resync": In(feeds),
            "recover": In(feeds),
            "events": Out(event_signature()),
            "notices": Out(stream.Signature(FeedNotice)),
            "next_sequence": Out(data.ArrayLayout(64, feeds)),
            "recover_to": Out(data.ArrayLayout(64, feeds)),
            "counters": Out(data.StructLayout({
                "udp": self.udp.counters.shape(), "mold": self.mold.counters.shape(),
                "itch": self.itch.counters.shape(), "notice_overflow": unsigned(32)})),
            "alarms": Out(Alarms),
            "clear_alarms": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.udp = udp = self.udp
        m.submodules.mold = mold = self.mold
        m.submodules.itch = itch = self.itch

        wiring.connect(m, wiring.flipped(self.rx), udp.rx)
        wiring.connect(m, udp.payload, mold.payload)
        wiring.connect(m, udp.verdict, mold.verdict)
        wiring.connect(m, mold.messages, itch.messages)
        wiring.connect(m, itch.events, wiring.flipped(self.events))
        m.d.comb += [
            udp.filters.eq(self.filters),
            mold.resync.eq(self.resync),
            mold.recover.eq(self.recover),
            self.next_sequence.eq(mold.next_sequence),
            self.recover_to.eq(mold.recover_to),
            self.counters.udp.eq(udp.counters),
            self.counters.mold.eq(mold.counters),
            self.counters.itch.eq(itch.counters),
        ]

        # Host notices: sequencing notices first (rare), then control-message notices.
        width = FeedNotice.as_shape().size
        m.submodules.sequencing_fifo = sequencing = fifo.SyncFIFOBuffered(width=width, depth=16)
        m.submodules.control_fifo = control = fifo.SyncFIFOBuffered(
            width=width, depth=self.notice_depth)
        lost = Signal()
        for source, queue in ((mold.notices, sequencing), (itch.notices, control)):
            m.d.comb += [queue.w_data.eq(source.payload), queue.w_en.eq(source.valid)]
            lost = lost | (source.valid & ~queue.w_rdy)
        count(m, self.counters, "notice_overflow", lost)

        out = self.notices
        with m.If(sequencing.r_rdy):
            m.d.comb += [out.valid.eq(1), out.payload.eq(sequencing.r_data),
                         sequencing.r_en.eq(out.ready)]
        with m.Else():
            m.d.comb += [out.valid.eq(control.r_rdy), out.payload.eq(control.r_data),
                         control.r_en.eq(out.ready)]

        alarms = self.alarms
        with m.If(self.clear_alarms):
            m.d.sync += alarms.eq(0)
        with m.If(udp.rx.valid & udp.rx.p.last & udp.rx.p.bad):
            m.d.sync += alarms.integrity.eq(1)
        with m.If(mold.notices.valid & (mold.notices.p.kind == NoticeKind.GAP)):
            m.d.sync += alarms.gap.eq(1)
        with m.If(lost):
            m.d.sync += alarms.overflow.eq(1)
        return m


class AxiStreamFeedHandler(wiring.Component):
    """`FeedHandler` behind an AXI-Stream MAC port named ``s_axis_*`` (for cocotbext-axi
    benches and MACs with AXI-Stream clients). Same ports otherwise; same latency."""

    def __init__(self, **parameters):
        self.core = FeedHandler(**parameters)
        members = dict(self.core.signature.members)
        del members["rx"]
        super().__init__({
            "s_axis_tdata": In(64), "s_axis_tkeep": In(8), "s_axis_tvalid": In(1),
            "s_axis_tlast": In(1), "s_axis_tuser": In(1), "s_axis_tready": Out(1),
            **members,
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.axis = axis = AxiStreamRx()
        m.submodules.core = core = self.core
        m.d.comb += [axis.tdata.eq(self.s_axis_tdata), axis.tkeep.eq(self.s_axis_tkeep),
                     axis.tvalid.eq(self.s_axis_tvalid), axis.tlast.eq(self.s_axis_tlast),
                     axis.tuser.eq(self.s_axis_tuser), self.s_axis_tready.eq(1)]
        wiring.connect(m, axis.rx, core.rx)
        for name in self.signature.members:
            if name.startswith("s_axis") or name == "rx":
                continue
            ours, theirs = getattr(self, name), getattr(core, name)
            if self.signature.members[name].flow == In:
                m.d.comb += _eq_all(theirs, ours)
            else:
                m.d.comb += _eq_all(ours, theirs)
        return m


def _eq_all(target, source):
    """Assignments for a port that may be a plain value or a stream interface."""
    if isinstance(target, stream.Interface):
        statements = [target.payload.eq(source.payload), target.valid.eq(source.valid)]
        if not target.signature.always_ready:
            statements.append(source.ready.eq(target.ready))
        return statements
    return [target.eq(source)]
