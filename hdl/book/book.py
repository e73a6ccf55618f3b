"""The order book: ITCH order references -> per-symbol price levels -> `BookUpdate`s."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tickwire.hdl.book.records import (
    BOOK_COUNTERS,
    PRICE_BITS,
    SHARES_BITS,
    Alarms,
    BookParameters,
    entry_layout,
    row_layout,
    set_index,
    side_layout,
    snapshot_layout,
    subscribe_layout,
    update_layout,
)
from tickwire.hdl.counters import count, counter_layout
from tickwire.hdl.feed.events import BookEventKind
from tickwire.hdl.feed.itch import event_signature
from tickwire.hdl.signals import wire

#: Cycles from an event valid at ``events`` to its BookUpdate valid (a replace takes one more).
BOOK_LATENCY_CYCLES = 4
#: Cycles the book spends per event (a replace takes one more); the FIFO absorbs bursts.
BOOK_CYCLES_PER_EVENT = 2

_INTEGRITY = ("unknown_ref", "locate_mismatch", "duplicate_ref", "bad_shares",
              "over_execution", "level_missing")
_CAPACITY = ("table_full", "ref_out_of_range", "level_saturated", "level_overflow")


def _queued_layout(p):
    """What the input FIFO keeps of a BookEvent: references already range-checked."""
    return data.StructLayout({
        "kind": unsigned(3), "side": 1, "locate": unsigned(16), "shares": unsigned(SHARES_BITS),
        "price": unsigned(PRICE_BITS), "ref_ok": 1, "ref": unsigned(p.ref_bits), "new_ok": 1,
        "new_ref": unsigned(p.ref_bits), "timestamp": unsigned(48), "sequence": unsigned(64)})


def _level_op(m, p, name, side_in, side, price, add, shares, gone, enable):
    """One change to one side of a book, combinationally: add `shares` (and one order) at
    `price`, or remove `shares` (and the order if `gone`) from it. Returns the new side and
    the flags (saturated, overflow, missing); with `enable` low the side is unchanged."""
    L = p.depth
    levels = [side_in.levels[i] for i in range(L)]
    used = [wire(m, lv.orders != 0, f"{name}_used{i}") for i, lv in enumerate(levels)]
    match = [wire(m, used[i] & (lv.price == price), f"{name}_match{i}")
             for i, lv in enumerate(levels)]
    better = [wire(m, used[i] & Mux(side, lv.price < price, lv.price > price), f"{name}_better{i}")
              for i, lv in enumerate(levels)]
    summed = [wire(m, lv.shares + shares, f"{name}_sum{i}", unsigned(SHARES_BITS + 1))
              for i, lv in enumerate(levels)]
    hit = wire(m, Cat(*match).any(), f"{name}_hit")
    carries = Cat(*(match[i] & summed[i][SHARES_BITS] for i in range(L)))
    saturated = wire(m, enable & add & carries.any(), f"{name}_saturated")
    hidden, boundary = side_in.hidden, side_in.boundary
    in_hidden = wire(m, (hidden != 0) & ~Mux(side, price < boundary, price > boundary),
                     f"{name}_in_hidden")
    full = used[L - 1]
    empties = wire(m, Cat(*(match[i] & (levels[i].orders == gone) for i in range(L))).any(),
                   f"{name}_empties")
    overflow = Signal(name=f"{name}_overflow")
    missing = Signal(name=f"{name}_missing")
    out = Signal(side_layout(p), name=f"{name}_out")
    m.d.comb += out.eq(side_in)
    with m.If(enable):
        with m.If(add):
            with m.If(hit):
                with m.If(~saturated):
                    for i, lv in enumerate(levels):
                        with m.If(match[i]):
                            m.d.comb += [out.levels[i].shares.eq(summed[i][:SHARES_BITS]),
                                         out.levels[i].orders.eq(lv.orders + 1)]
            with m.Elif(in_hidden):
                m.d.comb += [out.hidden.eq(hidden + 1), overflow.eq(1)]
            with m.Elif(better[L - 1]):            # full, and worse than every stored level
                m.d.comb += [out.hidden.eq(hidden + 1), out.boundary.eq(price), overflow.eq(1)]
            with m.Else():                         # insert; the worst level may be pushed out
                for i in range(L):
                    at = ~better[i] & (better[i - 1] if i else 1)
                    with m.If(at):
                        m.d.comb += [out.levels[i].price.eq(price),
                                     out.levels[i].shares.eq(shares),
                                     out.levels[i].orders.eq(1)]
                    with m.Elif(~better[i]):
                        m.d.comb += out.levels[i].eq(levels[i - 1])
                with m.If(full):
                    m.d.comb += [out.hidden.eq(hidden + levels[L - 1].orders),
                                 out.boundary.eq(levels[L - 1].price), overflow.eq(1)]
        with m.Else():
            with m.If(hit):
                with m.If(empties):                # the level goes: the ones below move up
                    for i in range(L):
                        with m.If(Cat(*match[:i + 1]).any()):
                            m.d.comb += out.levels[i].eq(levels[i + 1] if i + 1 < L else 0)
                with m.Else():
                    for i, lv in enumerate(levels):
                        with m.If(match[i]):
                            m.d.comb += [out.levels[i].shares.eq(lv.shares - shares),
                                         out.levels[i].orders.eq(lv.orders - gone)]
            with m.Elif(hidden != 0):
                with m.If(gone):
                    m.d.comb += out.hidden.eq(hidden - 1)
                    with m.If(hidden == 1):
                        m.d.comb += out.boundary.eq(0)
            with m.Else():
                m.d.comb += missing.eq(1)
    return out, saturated, overflow, missing


class OrderBook(wiring.Component):
    """Order book for up to ``symbols`` subscribed stock locates, fed by the FeedHandler.

    Data structure
    --------------
    *Subscription map*: a block RAM indexed by stock locate (``locates`` entries of
    valid + slot); events of unmapped locates are counted in ``unsubscribed`` and cost one
    pipeline pass, nothing else. The host maps a locate to a slot (which clears that slot's
    book) or unmaps it through ``subscribe``.

    *Order-reference table*: ``ways`` block RAMs of ``orders / ways`` entries, read in parallel
    (a set-associative hash table: bounded probing done in one cycle). The set of reference
    ``r`` is ``r[0:s] ^ r[s:2s]`` (s = log2 sets); the tag is ``r[s:ref_bits]``, so (set, tag)
    name ``r`` exactly and no two references alias. References of ``ref_bits`` bits or more are
    refused and counted (``ref_out_of_range``). An entry holds valid, tag, slot, side, price
    (32) and remaining shares (32): ``1 + (ref_bits - s) + log2(symbols) + 1 + 64`` bits.
    A reference whose set is full is refused and counted (``table_full``). Scaling to millions
    of orders keeps the same structure with the table in external SRAM/HBM (more sets, the
    same one-pass parallel probe of the ways).

    *Levels*: one block-RAM row per slot, holding both sides: ``depth`` levels each (price,
    aggregate shares, order count), sorted best first, plus a *hidden zone* per side: the
    number of live orders not in the stored levels and the best price among them
    (``boundary``). Invariant: every level strictly better than the boundary is stored. An
    add worse than a full side, or one that pushes the worst stored level out, moves orders
    into the hidden zone (``level_overflow``); the hidden zone empties as its orders go. The
    stored levels are therefore always exact; a side whose stored levels are fewer than
    ``visible`` while orders are hidden is flagged not ``complete`` on every BookUpdate and
    snapshot, and the ``capacity`` alarm is raised.

    Storage per build (bits): subscription map ``locates * (1 + log2 symbols)``; order table
    ``orders * entry``; levels ``symbols * 2 * (depth * (64 + c) + c + 32)`` with
    ``c = bit_length(orders)``. The default (ECP5) build: 16384 locates, 1024 symbols,
    10 stored levels (8 visible), 16384 orders in 8 ways of 2048 sets, 36-bit references
    (101-bit entries): by bit count 11 + 96 + 93 DP16KD of the LFE5UM5G-85F's 208. A
    64k-order table (64k x ~100 bits = 6.5 Mbit) does not fit in its 3.7 Mbit next to the
    levels of 1024 symbols, so the ECP5 build holds 16k orders; ``orders=65536`` builds and
    simulates (it is a parameter) but needs a larger part (or external SRAM). Eight ways make
    a full set rare: at 2000 live orders (12 % load) the benchmark's mix sees none; four ways
    refused about 1 % of adds at the same load.

    Policies: an execution or cancel for more than remains removes the order and is counted
    (``over_execution``); a replace of a live order removes it, then adds the new reference
    (same side and symbol) as one step with one BookUpdate; if the new order cannot be held
    (duplicate, full set, zero shares, out of range, saturated level) it is counted and the
    original stays removed. Nothing is applied half-way: a refused add changes neither table.
    Re-subscribing a locate mid-session starts its book empty: orders added before are
    unknown to it (their events count as ``unknown_ref``).

    Ports
    -----
    events : In(BookEvent stream, always ready): into a FIFO; a full FIFO loses the event,
        counted (``fifo_overflow``) and alarmed (``overflow``).
    updates : Out(BookUpdate stream): see `records.update_layout`. The book waits for
        ``ready`` (the FIFO absorbs the wait).
    subscribe : In(stream of `records.subscribe_layout`)
    snapshot_request : In(stream of a 16-bit locate); snapshot : Out(stream of
        `records.snapshot_layout`): the visible levels of both sides, for the host.
    counters : Out(one 32-bit counter per name in `records.BOOK_COUNTERS`)
    alarms : Out(Alarms), clear_alarms : In(1)

    Latency: 4 cycles from an event valid at ``events`` (FIFO empty) to its BookUpdate valid
    (5 for a replace). Throughput: one event every 2 cycles (a replace takes 3): the next
    event's subscription and order set are read while the current one is applied, and the
    order-table write of that cycle is forwarded to the read.

    Timing: APPLY is one combinational step (level row out of block RAM, price compares, the
    shift, the row and entry writes, the visible-level diff into the update FIFO). A reduced
    build routes at about 46 MHz on the LFE5UM5G-85F; reaching 156.25 MHz needs APPLY split
    into pipeline stages with the row forwarded between them (not done yet).
    """

    def __init__(self, parameters=None, **overrides):
        self.p = p = (parameters or BookParameters())._replace(**overrides).check()
        super().__init__({
            "events": In(event_signature()),
            "updates": Out(stream.Signature(update_layout(p))),
            "subscribe": In(stream.Signature(subscribe_layout(p))),
            "snapshot_request": In(stream.Signature(unsigned(16))),
            "snapshot": Out(stream.Signature(snapshot_layout(p))),
            "counters": Out(counter_layout(BOOK_COUNTERS)),
            "alarms": Out(Alarms),
            "clear_alarms": In(1),
        })

    def elaborate(self, platform):
        p = self.p
        m = Module()
        hits = {name: Signal(name=f"why_{name}") for name in BOOK_COUNTERS}

        # --- input FIFO ---------------------------------------------------------------------
        queued = _queued_layout(p)
        m.submodules.fifo = q = fifo.SyncFIFO(width=queued.size, depth=p.fifo_depth)
        e = self.events.p
        incoming = Signal(queued)
        m.d.comb += [
            incoming.kind.eq(e.kind), incoming.side.eq(e.side), incoming.locate.eq(e.locate),
            incoming.shares.eq(e.shares), incoming.price.eq(e.price),
            incoming.ref_ok.eq(e.order_ref[p.ref_bits:] == 0), incoming.ref.eq(e.order_ref),
            incoming.new_ok.eq(e.new_ref[p.ref_bits:] == 0), incoming.new_ref.eq(e.new_ref),
            incoming.timestamp.eq(e.timestamp), incoming.sequence.eq(e.sequence),
            q.w_data.eq(incoming), q.w_en.eq(self.events.valid),
            hits["fifo_overflow"].eq(self.events.valid & ~q.w_rdy),
        ]
        head = data.View(queued, q.r_data)

        # --- memories -----------------------------------------------------------------------
        sub_shape = data.StructLayout({"valid": 1, "slot": unsigned(p.slot_bits)})
        m.submodules.submap = submap = Memory(shape=sub_shape, depth=p.locates, init=[])
        sub_rd, sub_wr = submap.read_port(), submap.write_port()
        m.submodules.levels = levels = Memory(shape=row_layout(p), depth=p.symbols, init=[])
        row_rd, row_wr = levels.read_port(), levels.write_port()
        ways_rd, ways_wr = [], []
        for w in range(p.ways):
            mem = Memory(shape=entry_layout(p), depth=p.sets, init=[])
            m.submodules[f"way{w}"] = mem
            ways_rd.append(mem.read_port())
            ways_wr.append(mem.write_port())

        # --- state --------------------------------------------------------------------------
        ev = Signal(queued)                          # the event in LOOKUP / APPLY
        slot = Signal(p.slot_bits)
        hit = Signal()                               # order_ref found (in LOOKUP: registered)
        hit_way = Signal(range(p.ways))
        entry = Signal(entry_layout(p))
        free_ok = Signal()
        free_way = Signal(range(p.ways))
        new_dup, new_free_ok, new_free_way = Signal(), Signal(), Signal(range(p.ways))
        row_cur = Signal(row_layout(p))              # a replace's row between its two steps
        vis_old = Signal(side_layout(p))             # the event's side before the event
        # The last order-table write, forwarded to a read issued in the same cycle.
        last_set = Signal(p.set_bits)
        last_way = Signal(range(p.ways))
        last_entry = Signal(entry_layout(p))
        last_written = Signal()
        fetched_set = Signal(p.set_bits)

        # BookUpdates leave through a small FIFO; an event is only taken when its update (and
        # the one of the event before it, still in flight) will have room.
        m.submodules.out_fifo = out_q = fifo.SyncFIFO(width=update_layout(p).size, depth=4)
        upd = Signal(update_layout(p))
        m.d.comb += [out_q.w_data.eq(upd), self.updates.valid.eq(out_q.r_rdy),
                     self.updates.payload.eq(out_q.r_data), out_q.r_en.eq(self.updates.ready)]
        snap = self.snapshot
        with m.If(snap.ready):
            m.d.sync += snap.valid.eq(0)

        def set_of(ref):
            return set_index(p, ref)[:p.set_bits] if p.set_bits else Const(0, 1)

        def tag_of(ref):
            return ref[p.set_bits:p.ref_bits]

        # Ways as read, with the previous cycle's write forwarded (same set and way).
        ways = []
        for w in range(p.ways):
            view = Signal(entry_layout(p), name=f"way{w}_seen")
            forward = last_written & (last_way == w) & (last_set == fetched_set)
            m.d.comb += view.eq(Mux(forward, last_entry.as_value(), ways_rd[w].data.as_value()))
            ways.append(view)
        m.d.sync += last_written.eq(0)

        def write_entry(way, set_, value):
            for w in range(p.ways):
                with m.If(way == w):
                    m.d.comb += [ways_wr[w].en.eq(1), ways_wr[w].addr.eq(set_),
                                 ways_wr[w].data.eq(value)]
            m.d.sync += [last_written.eq(1), last_set.eq(set_), last_way.eq(way),
                         last_entry.eq(value)]

        kind = ev.kind
        is_add = kind == BookEventKind.ADD
        is_reduce = ((kind == BookEventKind.EXECUTE) | (kind == BookEventKind.EXECUTE_AT_PRICE)
                     | (kind == BookEventKind.CANCEL))
        is_replace = kind == BookEventKind.REPLACE

        # --- the one level-change circuit, fed by APPLY (add, or remove) or APPLY2 ----------
        op_row_in = Signal(row_layout(p))
        op_side, op_price, op_add = Signal(), Signal(PRICE_BITS), Signal()
        op_shares, op_gone, op_enable = Signal(SHARES_BITS), Signal(), Signal()
        side_in = Signal(side_layout(p))
        m.d.comb += side_in.eq(Mux(op_side, op_row_in.ask.as_value(), op_row_in.bid.as_value()))
        side_out, saturated, overflow, missing = _level_op(
            m, p, "op", side_in, op_side, op_price, op_add, op_shares, op_gone, op_enable)
        row_out = Signal(row_layout(p))
        m.d.comb += row_out.eq(op_row_in)
        with m.If(op_side):
            m.d.comb += row_out.ask.eq(side_out)
        with m.Else():
            m.d.comb += row_out.bid.eq(side_out)

        # BookUpdate from `vis_before` (the side before the event) and `row_out`.
        def complete(side):
            return (side.hidden == 0) | (side.levels[p.visible - 1].orders != 0)

        def emit(vis_before):
            after = side_out
            changed = Cat(*(after.levels[i].as_value() != vis_before.levels[i].as_value()
                            for i in range(p.visible)))
            changed_w = wire(m, changed, "changed")
            any_change = wire(m, (changed_w != 0) | (complete(after) != complete(vis_before)),
                              "any_change")
            m.d.comb += [
                upd.locate.eq(ev.locate), upd.slot.eq(slot), upd.side.eq(op_side),
                upd.changed.eq(changed_w),
                upd.complete.eq(Cat(complete(row_out.bid), complete(row_out.ask))),
                upd.bid_price.eq(row_out.bid.levels[0].price),
                upd.bid_shares.eq(row_out.bid.levels[0].shares),
                upd.ask_price.eq(row_out.ask.levels[0].price),
                upd.ask_shares.eq(row_out.ask.levels[0].shares),
                upd.timestamp.eq(ev.timestamp), upd.sequence.eq(ev.sequence),
            ]
            for i in range(p.visible):
                m.d.comb += upd.levels[i].eq(after.levels[i])
            with m.If(any_change):
                m.d.comb += [out_q.w_en.eq(1), hits["updates"].eq(1)]

        # --- addresses of reads -------------------------------------------------------------
        m.d.comb += [
            sub_rd.addr.eq(head.locate[:p.locate_bits]),
            row_rd.addr.eq(sub_rd.data.slot),
        ]
        fetch_set = Signal(p.set_bits)
        m.d.comb += fetch_set.eq(set_of(head.ref))
        for w in range(p.ways):
            m.d.comb += ways_rd[w].addr.eq(fetch_set)
        m.d.sync += fetched_set.eq(ways_rd[0].addr)

        def fetch():
            """Take the FIFO head: its subscription and its order set are read."""
            m.d.comb += [q.r_en.eq(1), hits["events"].eq(1)]
            m.d.sync += ev.eq(head)
            m.next = "LOOKUP"

        can_fetch = q.r_rdy & (out_q.level <= out_q.depth - 2)
        host_waiting = self.subscribe.valid | (self.snapshot_request.valid & ~snap.valid)
        can_overlap = can_fetch & ~host_waiting    # host requests are served from IDLE

        ref_tag = tag_of(ev.ref)
        match = [wire(m, ways[w].valid & (ways[w].tag == ref_tag), f"match{w}")
                 for w in range(p.ways)]
        free = [wire(m, ~ways[w].valid, f"free{w}") for w in range(p.ways)]

        def first(bits, target, ok):
            m.d.sync += ok.eq(Cat(*bits).any())
            for w in reversed(range(p.ways)):
                with m.If(bits[w]):
                    m.d.sync += target.eq(w)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.subscribe.valid):
                    s = self.subscribe.p
                    in_range = s.locate[p.locate_bits:] == 0
                    m.d.comb += [
                        self.subscribe.ready.eq(1),
                        sub_wr.addr.eq(s.locate[:p.locate_bits]), sub_wr.en.eq(in_range),
                        sub_wr.data.valid.eq(s.enable), sub_wr.data.slot.eq(s.slot),
                        row_wr.addr.eq(s.slot), row_wr.en.eq(in_range), row_wr.data.eq(0),
                    ]
                with m.Elif(self.snapshot_request.valid & ~snap.valid):
                    m.d.comb += [self.snapshot_request.ready.eq(1),
                                 sub_rd.addr.eq(self.snapshot_request.p[:p.locate_bits])]
                    m.d.sync += ev.locate.eq(self.snapshot_request.p)
                    m.next = "SNAP_LOOKUP"
                with m.Elif(can_fetch):
                    fetch()

            with m.State("LOOKUP"):
                # The subscription and the order set are here; the level row is read.
                sub = sub_rd.data
                subscribed = sub.valid & (ev.locate[p.locate_bits:] == 0)
                m.d.sync += [slot.eq(sub.slot), entry.eq(Mux(
                    Cat(*match).any(), _select(ways, match), 0))]
                first(match, hit_way, hit)
                first(free, free_way, free_ok)
                for w in range(p.ways):     # a replace reads the new reference's set
                    m.d.comb += ways_rd[w].addr.eq(set_of(ev.new_ref))
                with m.If(~subscribed):
                    m.d.comb += hits["unsubscribed"].eq(1)
                    m.next = "IDLE"
                with m.Elif(~ev.ref_ok):
                    m.d.comb += hits["ref_out_of_range"].eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.next = "APPLY"

            with m.State("APPLY"):
                row_in = row_rd.data
                side = Mux(is_add, ev.side, entry.side)
                remaining = entry.shares
                over = wire(m, is_reduce & (ev.shares > remaining), "over")
                amount = wire(m, Mux(is_reduce & ~over, ev.shares, remaining), "amount")
                gone = wire(m, amount == remaining, "gone")
                found = wire(m, hit & (entry.slot == slot), "found")
                add_ok = wire(m, is_add & (ev.shares != 0) & ~hit & free_ok, "add_ok")
                m.d.comb += [
                    op_row_in.eq(row_in), op_side.eq(side),
                    op_price.eq(Mux(is_add, ev.price, entry.price)), op_add.eq(is_add),
                    op_shares.eq(Mux(is_add, ev.shares, amount)), op_gone.eq(gone),
                    op_enable.eq(add_ok | (~is_add & found)),
                ]
                m.d.sync += vis_old.eq(side_in)
                with m.If(is_add):
                    m.d.comb += [
                        hits["bad_shares"].eq(ev.shares == 0),
                        hits["duplicate_ref"].eq((ev.shares != 0) & hit),
                        hits["table_full"].eq((ev.shares != 0) & ~hit & ~free_ok),
                    ]
                    with m.If(add_ok & ~saturated):
                        new = Signal(entry_layout(p))
                        m.d.comb += [new.valid.eq(1), new.tag.eq(tag_of(ev.ref)),
                                     new.slot.eq(slot), new.side.eq(ev.side),
                                     new.price.eq(ev.price), new.shares.eq(ev.shares)]
                        write_entry(free_way, set_of(ev.ref), new)
                with m.Elif(~hit):
                    m.d.comb += hits["unknown_ref"].eq(1)
                with m.Elif(~found):
                    m.d.comb += hits["locate_mismatch"].eq(1)
                with m.Else():
                    m.d.comb += hits["over_execution"].eq(over)
                    reduced = Signal(entry_layout(p))
                    m.d.comb += [reduced.eq(entry), reduced.valid.eq(~gone),
                                 reduced.shares.eq(remaining - amount)]
                    write_entry(hit_way, set_of(ev.ref), reduced)
                # A replace's new reference: its set was read in LOOKUP (before the write
                # above), so the original's way counts as free when the sets coincide.
                same_set = set_of(ev.new_ref) == set_of(ev.ref)
                new_tag = tag_of(ev.new_ref)
                freed = [same_set & found & (hit_way == w) for w in range(p.ways)]
                dup2 = [wire(m, ways_rd[w].data.valid & ~freed[w]
                             & (ways_rd[w].data.tag == new_tag), f"dup2_{w}")
                        for w in range(p.ways)]
                free2 = [wire(m, ~ways_rd[w].data.valid | freed[w], f"free2_{w}")
                         for w in range(p.ways)]
                m.d.sync += new_dup.eq(Cat(*dup2).any())
                first(free2, new_free_way, new_free_ok)
                m.d.sync += row_cur.eq(row_out)
                with m.If(is_replace & found):
                    m.next = "APPLY2"
                with m.Else():
                    with m.If(op_enable & ~saturated):
                        m.d.comb += [row_wr.en.eq(1), row_wr.addr.eq(slot),
                                     row_wr.data.eq(row_out)]
                    emit(side_in)
                    with m.If(can_overlap):
                        fetch()
                    with m.Else():
                        m.next = "IDLE"

            with m.State("APPLY2"):
                # The replace's new order: same side and symbol as the original.
                add_ok = wire(m, ev.new_ok & (ev.shares != 0) & ~new_dup & new_free_ok,
                              "add2_ok")
                m.d.comb += [
                    op_row_in.eq(row_cur), op_side.eq(entry.side), op_price.eq(ev.price),
                    op_add.eq(1), op_shares.eq(ev.shares), op_gone.eq(0), op_enable.eq(add_ok),
                    hits["ref_out_of_range"].eq(~ev.new_ok),
                    hits["bad_shares"].eq(ev.new_ok & (ev.shares == 0)),
                    hits["duplicate_ref"].eq(ev.new_ok & (ev.shares != 0) & new_dup),
                    hits["table_full"].eq(ev.new_ok & (ev.shares != 0) & ~new_dup
                                          & ~new_free_ok),
                    row_wr.en.eq(1), row_wr.addr.eq(slot), row_wr.data.eq(row_out),
                ]
                with m.If(add_ok & ~saturated):
                    new = Signal(entry_layout(p))
                    m.d.comb += [new.valid.eq(1), new.tag.eq(tag_of(ev.new_ref)),
                                 new.slot.eq(slot), new.side.eq(entry.side),
                                 new.price.eq(ev.price), new.shares.eq(ev.shares)]
                    write_entry(new_free_way, set_of(ev.new_ref), new)
                emit(vis_old)
                with m.If(can_overlap):
                    fetch()
                with m.Else():
                    m.next = "IDLE"

            with m.State("SNAP_LOOKUP"):
                m.next = "SNAP_READ"
                m.d.sync += slot.eq(sub_rd.data.slot)
                subscribed = sub_rd.data.valid & (ev.locate[p.locate_bits:] == 0)
                m.d.sync += entry.valid.eq(subscribed)

            with m.State("SNAP_READ"):
                row = row_rd.data
                m.d.sync += [snap.valid.eq(1), snap.p.locate.eq(ev.locate),
                             snap.p.subscribed.eq(entry.valid)]
                with m.If(entry.valid):
                    m.d.sync += snap.p.complete.eq(Cat(complete(row.bid), complete(row.ask)))
                    for i in range(p.visible):
                        m.d.sync += [snap.p.bid[i].eq(row.bid.levels[i]),
                                     snap.p.ask[i].eq(row.ask.levels[i])]
                with m.Else():
                    m.d.sync += [snap.p.complete.eq(0b11), snap.p.bid.eq(0), snap.p.ask.eq(0)]
                m.next = "IDLE"


        # --- counters and alarms ------------------------------------------------------------
        m.d.comb += [hits["level_saturated"].eq(saturated), hits["level_overflow"].eq(
            overflow & ~saturated), hits["level_missing"].eq(missing)]
        for name in BOOK_COUNTERS:
            count(m, self.counters, name, hits[name])
        alarms = self.alarms
        with m.If(self.clear_alarms):
            m.d.sync += alarms.eq(0)
        with m.If(Cat(*(hits[n] for n in _INTEGRITY)).any()):
            m.d.sync += alarms.integrity.eq(1)
        with m.If(Cat(*(hits[n] for n in _CAPACITY)).any()):
            m.d.sync += alarms.capacity.eq(1)
        with m.If(hits["fifo_overflow"]):
            m.d.sync += alarms.overflow.eq(1)
        return m


def _select(values, onehot):
    """The value whose bit is set in `onehot` (an AND-OR)."""
    result = 0
    for value, bit in zip(values, onehot, strict=True):
        result = result | Mux(bit, value.as_value(), 0)
    return result


__all__ = ["OrderBook", "BookParameters", "BOOK_LATENCY_CYCLES", "BOOK_CYCLES_PER_EVENT"]
