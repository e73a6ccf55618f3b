"""ITCH 5.0 decode: messages -> `BookEvent`s for the book, `FeedNotice`s for the host."""

from amaranth.hdl import Cat, Module, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.counters import count, counter_layout
from tickwire.hdl.feed.events import BookEvent, BookEventKind, FeedNotice, NoticeKind, Side
from tickwire.hdl.feed.itch_format import MESSAGES
from tickwire.hdl.feed.moldudp64 import message_signature
from tickwire.hdl.signals import wire


def counter_name(message_type):
    letter = chr(message_type[0])
    return f"type_{letter}" if letter.isupper() else f"type_{letter}_lower"


ITCH_COUNTERS = tuple(counter_name(t) for t in MESSAGES) + ("unknown", "bad_message")

_EVENT_KINDS = {b"A": BookEventKind.ADD, b"F": BookEventKind.ADD, b"E": BookEventKind.EXECUTE,
                b"C": BookEventKind.EXECUTE_AT_PRICE, b"X": BookEventKind.CANCEL,
                b"D": BookEventKind.DELETE, b"U": BookEventKind.REPLACE}
# BookEvent field <- ITCH field, per message type (all from the table in itch_format).
_EVENT_FIELDS = {
    b"A": {"order_ref": "order_ref", "shares": "shares", "price": "price"},
    b"F": {"order_ref": "order_ref", "shares": "shares", "price": "price"},
    b"E": {"order_ref": "order_ref", "shares": "executed_shares"},
    b"C": {"order_ref": "order_ref", "shares": "executed_shares", "price": "execution_price"},
    b"X": {"order_ref": "order_ref", "shares": "cancelled_shares"},
    b"D": {"order_ref": "order_ref"},
    b"U": {"order_ref": "original_ref", "new_ref": "new_ref", "shares": "shares",
           "price": "price"},
}
_NOTICES = {b"S": (NoticeKind.SYSTEM_EVENT, None, "event_code"),
            b"R": (NoticeKind.STOCK_DIRECTORY, "stock", "market_category"),
            b"H": (NoticeKind.TRADING_ACTION, "stock", "trading_state")}


def event_signature():
    return stream.Signature(BookEvent, always_ready=True)


class ItchDecoder(wiring.Component):
    """Decodes ITCH 5.0 messages at any rate up to one per cycle.

    Every type of the specification is recognised and its length checked against the table;
    a known type with the wrong length, or an Add Order whose side is neither ``B`` nor ``S``,
    is never decoded: it is counted in ``bad_message`` and reported as a `BAD_MESSAGE` notice.
    A, F, E, C, X, D and U become `BookEvent`s; S, R and H become notices for the host; the
    other types are counted and skipped; unknown types are counted in ``unknown``.

    Ports
    -----
    messages : In(MoldMessage stream, always ready)
    events : Out(BookEvent stream, always ready)
    notices : Out(FeedNotice stream, always ready)
    counters : Out(one 32-bit counter per name in ITCH_COUNTERS)

    Latency: 1 cycle.
    """

    def __init__(self):
        super().__init__({
            "messages": In(message_signature()),
            "events": Out(event_signature()),
            "notices": Out(stream.Signature(FeedNotice, always_ready=True)),
            "counters": Out(counter_layout(ITCH_COUNTERS)),
        })

    def elaborate(self, platform):
        m = Module()
        msg, valid = self.messages.p, self.messages.valid
        raw = msg.data

        def field(spec, name):
            f = spec.field(name)
            return Cat(*(raw[8 * (f.offset + f.length - 1 - i):8 * (f.offset + f.length - i)]
                         for i in range(f.length)))

        any_spec = MESSAGES[b"A"]
        locate = field(any_spec, "stock_locate")
        timestamp = field(any_spec, "timestamp")
        message_type = raw[0:8]

        well_formed, known = {}, []
        for t, spec in MESSAGES.items():
            is_type = wire(m, valid & (message_type == t[0]), f"is_{counter_name(t)}")
            known.append(is_type)
            ok = is_type & (msg.length == spec.length)
            if t in b"AF":
                ok = ok & ((field(spec, "side") == ord("B")) | (field(spec, "side") == ord("S")))
            well_formed[t] = wire(m, ok, f"ok_{counter_name(t)}")
            count(m, self.counters, counter_name(t), ok)
            if t in b"AF":
                malformed = is_type & ~ok
            else:
                malformed = is_type & (msg.length != spec.length)
            well_formed[t, "bad"] = malformed
        bad = wire(m, Cat(*(v for k, v in well_formed.items() if isinstance(k, tuple))).any(),
                   "bad")
        count(m, self.counters, "unknown", valid & ~Cat(*known).any())
        count(m, self.counters, "bad_message", bad)

        # Book events.
        event = self.events
        is_event = Cat(*(well_formed[t] for t in _EVENT_KINDS)).any()
        m.d.sync += event.valid.eq(is_event)
        with m.If(is_event):
            m.d.sync += [event.p.eq(0), event.p.locate.eq(locate),
                         event.p.timestamp.eq(timestamp), event.p.sequence.eq(msg.sequence),
                         event.p.feed.eq(msg.feed)]
            for t, kind in _EVENT_KINDS.items():
                spec = MESSAGES[t]
                with m.If(well_formed[t]):
                    m.d.sync += event.p.kind.eq(kind)
                    for ours, theirs in _EVENT_FIELDS[t].items():
                        m.d.sync += getattr(event.p, ours).eq(field(spec, theirs))
                    if t in b"AF":
                        m.d.sync += event.p.side.eq(
                            Mux(field(spec, "side") == ord("S"), Side.SELL, Side.BUY))
                    if t == b"C":
                        m.d.sync += event.p.printable.eq(field(spec, "printable") == ord("Y"))

        # Host notices: control messages and malformed ones.
        notice = self.notices
        is_notice = Cat(*(well_formed[t] for t in _NOTICES)).any() | bad
        m.d.sync += notice.valid.eq(is_notice)
        with m.If(is_notice):
            m.d.sync += [notice.p.eq(0), notice.p.feed.eq(msg.feed),
                         notice.p.sequence.eq(msg.sequence)]
            with m.If(bad):
                m.d.sync += [notice.p.kind.eq(NoticeKind.BAD_MESSAGE),
                             notice.p.code.eq(message_type), notice.p.value.eq(msg.length)]
            for t, (kind, value, code) in _NOTICES.items():
                spec = MESSAGES[t]
                with m.If(well_formed[t]):
                    m.d.sync += [notice.p.kind.eq(kind), notice.p.locate.eq(locate),
                                 notice.p.timestamp.eq(timestamp),
                                 notice.p.code.eq(field(spec, code))]
                    if value is not None:
                        m.d.sync += notice.p.value.eq(field(spec, value))
        return m
