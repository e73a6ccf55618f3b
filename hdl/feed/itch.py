"""ITCH 5.0 decode: messages -> `BookEvent`s for the book, `FeedNotice`s for the host."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.counters import count, counter_layout
from tickwire.hdl.feed.events import BookEvent, BookEventKind, FeedNotice, NoticeKind
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

    Latency: 1 cycle for events; notices follow a cycle later (2 cycles).
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

        def field(spec, name, raw=raw):
            f = spec.field(name)
            return Cat(*(raw[8 * (f.offset + f.length - 1 - i):8 * (f.offset + f.length - i)]
                         for i in range(f.length)))

        any_spec = MESSAGES[b"A"]
        locate = field(any_spec, "stock_locate")
        timestamp = field(any_spec, "timestamp")
        message_type = raw[0:8]

        well_formed, known, of_type = {}, [], {}
        for t, spec in MESSAGES.items():
            of_type[t] = wire(m, message_type == t[0], f"type_is_{counter_name(t)}")
            is_type = wire(m, valid & of_type[t], f"is_{counter_name(t)}")
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

        def one_of(choices, width):
            """The value of the one true condition (types are exclusive), else zero."""
            return _or_all([Mux(cond, value, 0) for cond, value in choices], width)

        # Book events: payloads are written every cycle (meaningful when valid), each field an
        # AND-OR selected by the type byte alone, so that only `valid` waits for the checks.
        event = self.events
        ok = well_formed
        m.d.sync += [
            event.valid.eq(Cat(*(ok[t] for t in _EVENT_KINDS)).any()),
            event.p.kind.eq(one_of([(of_type[t], k.value) for t, k in _EVENT_KINDS.items()], 3)),
            event.p.locate.eq(locate), event.p.timestamp.eq(timestamp),
            event.p.sequence.eq(msg.sequence), event.p.feed.eq(msg.feed),
        ]
        for ours in ("order_ref", "new_ref", "shares", "price"):
            choices = [(of_type[t], field(MESSAGES[t], theirs))
                       for t, fields in _EVENT_FIELDS.items()
                       for name, theirs in fields.items() if name == ours]
            target = getattr(event.p, ours)
            m.d.sync += target.eq(one_of(choices, len(target)))
        side = field(MESSAGES[b"A"], "side")          # same offset in A and F
        m.d.sync += [
            event.p.side.eq((of_type[b"A"] | of_type[b"F"]) & (side == ord("S"))),
            event.p.printable.eq(of_type[b"C"]
                                 & (field(MESSAGES[b"C"], "printable") == ord("Y"))),
        ]

        # Host notices (control messages and malformed ones) are built a cycle later, from a
        # registered copy of what they need: they are off the events' latency path.
        notice_bytes = max(MESSAGES[t].field(name).offset + MESSAGES[t].field(name).length
                           for t, names in _NOTICES.items() for name in names[1:] if name)
        late_raw = Signal(8 * notice_bytes)
        late_length = Signal.like(msg.length)
        late_sequence = Signal.like(msg.sequence)
        late_feed = Signal.like(msg.feed)
        late_bad = Signal()
        late_ok = {t: Signal(name=f"late_ok_{counter_name(t)}") for t in _NOTICES}
        m.d.sync += [late_raw.eq(raw[:len(late_raw)]), late_length.eq(msg.length),
                     late_sequence.eq(msg.sequence), late_feed.eq(msg.feed), late_bad.eq(bad),
                     *(late_ok[t].eq(ok[t]) for t in _NOTICES)]

        notice = self.notices
        control = [(late_ok[t], kind, value, code) for t, (kind, value, code) in _NOTICES.items()]
        late_locate = field(any_spec, "stock_locate", late_raw)
        late_timestamp = field(any_spec, "timestamp", late_raw)
        m.d.sync += [
            notice.valid.eq(Cat(*late_ok.values()).any() | late_bad),
            notice.p.kind.eq(one_of([(late_bad, NoticeKind.BAD_MESSAGE.value)]
                                    + [(c, k.value) for c, k, _, _ in control], 4)),
            notice.p.feed.eq(late_feed), notice.p.sequence.eq(late_sequence),
            notice.p.locate.eq(Mux(late_bad, 0, late_locate)),
            notice.p.timestamp.eq(Mux(late_bad, 0, late_timestamp)),
            notice.p.code.eq(one_of([(late_bad, late_raw[0:8])]
                                    + [(c, field(MESSAGES[t], code, late_raw))
                                       for (c, _, _, code), t in zip(control, _NOTICES,
                                                                     strict=True)], 8)),
            notice.p.value.eq(one_of([(late_bad, late_length)]
                                     + [(c, field(MESSAGES[t], value, late_raw))
                                        for (c, _, value, _), t in zip(control, _NOTICES,
                                                                       strict=True)
                                        if value is not None], 64)),
        ]
        return m


def _or_all(values, width):
    result = 0
    for value in values:
        result = result | value
    return result if isinstance(result, int) else result[0:width]
