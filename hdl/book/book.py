"""The order book: ITCH order references -> per-symbol price levels -> `BookUpdate`s."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tickwire.hdl.book.levels import (
    after_removal,
    equal,
    flags_layout,
    level_apply,
    level_compare,
    saturates,
)
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

#: Cycles from an event valid at ``events`` (FIFO empty) to its BookUpdate valid (a replace
#: takes one more).
BOOK_LATENCY_CYCLES = 5
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

    Pipeline: one event at a time in each stage, a new event every 2 cycles (a replace 3).

    - F (issue): the FIFO head (or, the FIFO being empty, the event arriving this cycle)
      addresses the subscription map and its order set (all ways).
    - L (lookup): the subscription gives the slot, which addresses the level row; the ways
      are compared with the reference (hit, free way) and registered as read, with the
      matching way's number, the side the event changes and, per way, whether the event
      takes all the entry's shares or more (the entry itself is chosen in X by the way's
      number); whether the row comes from the block RAM or from the event ahead is decided.
    - R (a replace): the original order's removal and the new order's add are both compared
      against the row's side (two sets of flags); the new reference's set, read in L, is
      checked (per way; M ORs it). A replace whose original is unknown is counted here.
    - A (compare): the row against the event, on both sides (the side chosen after the
      compares): which level holds the price, which are better, whether each level's sum
      overflows, the hidden zone; an add's flags (the event's price) and a removal's (the
      entry's) are both made, one chosen. The order-table write is
      decided here and made in the next cycle. After R, this cycle is M instead: the removal
      is made and the add's flags are corrected for it (`levels.after_removal`: levels moved
      up by an emptied level take their flags along, a reduced level's carry is found again,
      the hidden zone's last order leaving empties it), without comparing again.
    - B (change): the new side from the flags (increment unless it saturates, decrement,
      insertion, removal); an add's order-table write, made this cycle, is dropped if its
      level saturates.
    - C (emit): the new row is written back; the visible levels before and after are
      compared and the BookUpdate, if any, goes into the update FIFO.

    Hazards are forwarded, never stalled: the row an event reads in L while the event ahead
    of it on the same slot is still in B (or in C, written in the same cycle) is taken in A
    from C's register, which holds that event's new row then (events are issued 2 cycles
    apart, so B is empty the cycle after), so that only a 2:1 select stands before A's
    compares and B's new row feeds nothing but C; an order-table read that missed a write
    (made the cycle it was issued, or the cycle its data arrive) sees the written entry
    instead of the block RAM's, which of them is decided as the read is issued and the tag
    and shares compared on each.

    Latency: 5 cycles from an event valid at ``events`` (FIFO empty) to its BookUpdate valid
    (6 for a replace). Throughput: one event every 2 cycles (a replace 3): 0.485 events per
    cycle on the benchmark's realistic mix, 0.333 on chained replaces (sim/book_bench.py's
    rate measurement, Verilator); latency there min 5, median 5, p99 6, max 6. An event is
    issued while the one ahead of it is in A; issuing one every cycle needs A's flags
    corrected for the change still in B on the same slot and side (as `after_removal` does
    for a replace's removal), not done yet.

    Timing: every stage is a select and compares (A, R), or a reduction of registered flags
    and a shift (B, M), or a wide compare (C); registers whose validity is tracked elsewhere
    load every cycle, so that no late enable fans out to them; a value chosen late (the side,
    the entry) selects results after the compares instead of feeding them; wide equalities
    (tags, prices) are balanced trees of kept nets (`levels.equal`), which the LUT mapper
    otherwise chains. The reduced build (tests/test_book_synthesis.py's parameters) routes at
    127.1 MHz on the LFE5UM5G-85F (nextpnr-ecp5, seed 1; 12.6k LUTs, 5.4k FFs), up from
    110.9 (86.6 before the forwarding rework, about 46 MHz before the pipeline). Critical
    path (7.9 ns, 5.2 of it routing): L, a way's block RAM, the tag tree, the matching way's
    side into `x_op_side` (whose register sits by its fanout, 1.2 ns away). Next: the side
    chosen in A again with its fanout cut (copies), B's per-level selects decided in A, the
    block RAMs' output registers (a cycle of latency).
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
        row_shape, side_shape, entry_shape = row_layout(p), side_layout(p), entry_layout(p)

        def set_of(ref):
            return set_index(p, ref)[:p.set_bits]

        def tag_of(ref):
            return ref[p.set_bits:p.ref_bits]

        def first(bits, target, ok):
            m.d.sync += ok.eq(Cat(*bits).any())
            for w in reversed(range(p.ways)):
                with m.If(bits[w]):
                    m.d.sync += target.eq(w)

        def with_side(row, side, value, name):
            out = Signal(row_shape, name=name)
            m.d.comb += out.eq(row)
            with m.If(side):
                m.d.comb += out.ask.eq(value)
            with m.Else():
                m.d.comb += out.bid.eq(value)
            return out

        def side_of(row, side, name):
            return wire(m, Mux(side, row.ask.as_value(), row.bid.as_value()), name, side_shape)

        # --- input FIFO (bypassed when it is empty and the pipeline can take the event) -----
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
        ]
        head = Signal(queued)
        take = Signal()                              # F: `head` enters the pipeline
        m.d.comb += [
            head.eq(Mux(q.r_rdy, q.r_data, incoming.as_value())),
            q.w_data.eq(incoming),
            q.w_en.eq(self.events.valid & ~(take & ~q.r_rdy)),
            q.r_en.eq(take & q.r_rdy),
            hits["fifo_overflow"].eq(self.events.valid & ~q.w_rdy),
            hits["events"].eq(take),
        ]

        # --- memories -----------------------------------------------------------------------
        sub_shape = data.StructLayout({"valid": 1, "slot": unsigned(p.slot_bits)})
        m.submodules.submap = submap = Memory(shape=sub_shape, depth=p.locates, init=[])
        sub_rd, sub_wr = submap.read_port(), submap.write_port()
        m.submodules.levels = levels = Memory(shape=row_shape, depth=p.symbols, init=[])
        row_rd, row_wr = levels.read_port(), levels.write_port()
        ways_rd, ways_wr = [], []
        for w in range(p.ways):
            mem = Memory(shape=entry_shape, depth=p.sets, init=[])
            m.submodules[f"way{w}"] = mem
            ways_rd.append(mem.read_port())
            ways_wr.append(mem.write_port())

        # --- pipeline registers -------------------------------------------------------------
        # L: the subscription and the order set arrive, the level row is read.
        l_valid, l_ev = Signal(), Signal(queued)
        # X: one event; R (a replace's removal, one step) then A (compare), or A alone.
        x_valid, x_is_r, x_after_r = Signal(), Signal(), Signal()
        x_ev, x_slot = Signal(queued), Signal(p.slot_bits)
        # The ways as read (after forwarding) and which one holds the reference: the entry is
        # chosen in X by the registered way number (a 4:1 select), off L's compares.
        x_hit, x_hit_way = Signal(name="x_hit"), Signal(range(p.ways), name="x_hit_way")
        x_ways = [Signal(entry_shape, name=f"x_way{w}") for w in range(p.ways)]
        # `x_op_side`: the side the event changes (the entry's, but for an add), registered:
        # it selects every flag and side in A.
        x_is_add, x_op_side = Signal(name="x_is_add"), Signal(name="x_op_side")
        # Per way, against the event's shares (compared in L, chosen in X with the entry): the
        # event takes more than the entry holds, the order goes.
        x_over, x_gone = Signal(p.ways, name="x_over"), Signal(p.ways, name="x_gone")
        x_free_ok, x_free_way = Signal(), Signal(range(p.ways))
        # Where the row comes from: the block RAM, or `c_row`, the row the event ahead on the
        # same slot made (see L), decided a cycle early so that only a 2:1 select stands
        # before the compares.
        x_from_ram = Signal(name="x_from_ram")
        x_found = Signal()
        new_free_ok, new_free_way = Signal(name="new_free_ok"), Signal(range(p.ways))
        # R -> M: per way, the new reference's tag is there, the original order's entry is
        # (M ORs them: the reduction stays out of R, after the block RAM).
        new_held, new_freed = Signal(p.ways, name="new_held"), Signal(p.ways, name="new_freed")
        # R -> M (a replace): the side before the removal, the removal's and the add's flags
        # against it, each level's shares less the removed shares.
        r_side, r_flags, r_add_flags = Signal(side_shape), Signal(flags_layout(p)), \
            Signal(flags_layout(p))
        r_less = Signal(data.ArrayLayout(unsigned(SHARES_BITS), p.depth))
        # B: the change made (shift / merge).
        b_valid, b_row = Signal(name="b_valid"), Signal(row_shape, name="b_row")
        b_side_in, b_vis = Signal(side_shape, name="b_side_in"), Signal(side_shape, name="b_vis")
        b_flags = Signal(flags_layout(p))
        b_side, b_price, b_add, b_shares = Signal(), Signal(PRICE_BITS), Signal(), \
            Signal(SHARES_BITS)
        b_gone, b_enable = Signal(), Signal()
        b_slot, b_locate, b_ts, b_seq = Signal(p.slot_bits), Signal(16), Signal(48), Signal(64)
        # C: the row written back, the BookUpdate made.
        c_valid, c_row, c_after, c_vis = Signal(name="c_valid"), Signal(row_shape, name="c_row"), \
            Signal(side_shape, name="c_after"), Signal(side_shape, name="c_vis")
        c_side, c_slot, c_locate, c_ts, c_seq = Signal(), Signal(p.slot_bits), Signal(16), \
            Signal(48), Signal(64)
        # Order-table writes: scheduled one cycle ahead (`wr_*`, written the next cycle), and
        # the one written last cycle (`lw_*`); both are forwarded to reads that missed them.
        wr_en, wr_set, wr_way, wr_val = Signal(), Signal(p.set_bits), Signal(range(p.ways)), \
            Signal(entry_shape)
        # An add's entry is scheduled in A and made in B (`wr_fit`) only if B finds that its
        # level does not saturate (`wr_go`): the saturation's reduction stays out of A.
        wr_fit, wr_go = Signal(), Signal()
        lw_val = Signal(entry_shape)
        # Whether a read missed a write is found a cycle early (the sets compared as the read
        # is issued): `wr_same`, the write scheduled is to the set being read; `lw_hit`, per
        # way, the write being made is.
        wr_same, lw_hit = Signal(), Signal(p.ways)

        # --- the order table: reads, writes, forwarding -------------------------------------
        read_set = Signal(p.set_bits)
        m.d.comb += read_set.eq(Mux(l_valid, set_of(l_ev.new_ref), set_of(head.ref)))
        ways, from_wr = [], []
        for w in range(p.ways):
            m.d.comb += [ways_rd[w].addr.eq(read_set),
                         ways_wr[w].en.eq(wr_go & (wr_way == w)), ways_wr[w].addr.eq(wr_set),
                         ways_wr[w].data.eq(wr_val)]
            m.d.sync += lw_hit[w].eq(wr_go & (wr_way == w) & (wr_set == read_set))
            view = Signal(entry_shape, name=f"way{w}_seen")
            from_wr.append(wire(m, wr_go & (wr_way == w) & wr_same, f"from_wr{w}"))
            m.d.comb += view.eq(Mux(from_wr[w], wr_val.as_value(), Mux(
                lw_hit[w], lw_val.as_value(), ways_rd[w].data.as_value())))
            ways.append(view)
        m.d.sync += [lw_val.eq(wr_val), wr_en.eq(0)]

        def holds(w, tag, name):
            """`ways[w]` is valid with `tag`: compared on each source of the entry, then
            chosen (the compare does not wait for the forwarding select). The block RAM's
            compare is a tree of kept nets: left to itself, the mapper chains it (it sees the
            carry chains as the longer paths, not the routing after the block RAM)."""
            def live(entry):
                return entry.valid & (entry.tag == tag)
            ram = ways_rd[w].data
            return Mux(from_wr[w], live(wr_val), Mux(lw_hit[w], live(lw_val), ram.valid & equal(
                m, ram.tag, tag, f"{name}{w}_tag")))

        def schedule_write(way, set_, value, enable=1, fit=0):
            """Write `value` in the next cycle if `enable` (and, with `fit`, if the add does
            not saturate its level): what is written never waits for whether it is (the entry
            goes into `wr_*` regardless)."""
            m.d.sync += [wr_en.eq(enable), wr_way.eq(way), wr_set.eq(set_), wr_val.eq(value),
                         wr_fit.eq(fit), wr_same.eq(set_ == read_set)]

        # --- BookUpdates leave through a small FIFO; an event is only taken when its update
        # and those of the (at most two) events ahead of it will have room.
        # Every event's outcome goes in, with whether it changed the visible book: the FIFO's
        # write enable does not wait for C's wide compare; one that did not is dropped at the
        # head (the cycle it gets there, so it never delays an update behind it).
        m.submodules.out_fifo = out_q = fifo.SyncFIFO(width=update_layout(p).size + 1, depth=8)
        upd, upd_changed = Signal(update_layout(p)), Signal()
        head_changed = out_q.r_data[-1]
        m.d.comb += [out_q.w_data.eq(Cat(upd, upd_changed)),
                     self.updates.valid.eq(out_q.r_rdy & head_changed),
                     self.updates.payload.eq(out_q.r_data[:-1]),
                     out_q.r_en.eq(self.updates.ready | ~head_changed)]

        # --- host requests and the issue of events (F) ---------------------------------------
        snap = self.snapshot
        with m.If(snap.ready):
            m.d.sync += snap.valid.eq(0)
        empty = ~l_valid & ~x_valid & ~b_valid & ~c_valid
        can_issue = ~l_valid & ~(x_valid & x_is_r)  # one event per 2 cycles, a replace 3
        room = out_q.level <= out_q.depth - 3
        host_waiting = self.subscribe.valid | (self.snapshot_request.valid & ~snap.valid)
        snap_locate, snap_sub = Signal(16), Signal()
        m.d.comb += [sub_rd.addr.eq(head.locate[:p.locate_bits]),
                     row_rd.addr.eq(sub_rd.data.slot)]

        def complete(side):
            return (side.hidden == 0) | (side.levels[p.visible - 1].orders != 0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(host_waiting):             # served once the pipeline is empty
                    with m.If(empty & self.subscribe.valid):
                        s = self.subscribe.p
                        in_range = s.locate[p.locate_bits:] == 0
                        m.d.comb += [
                            self.subscribe.ready.eq(1),
                            sub_wr.addr.eq(s.locate[:p.locate_bits]), sub_wr.en.eq(in_range),
                            sub_wr.data.valid.eq(s.enable), sub_wr.data.slot.eq(s.slot),
                            row_wr.addr.eq(s.slot), row_wr.en.eq(in_range), row_wr.data.eq(0),
                        ]
                    with m.Elif(empty):
                        m.d.comb += [self.snapshot_request.ready.eq(1),
                                     sub_rd.addr.eq(self.snapshot_request.p[:p.locate_bits])]
                        m.d.sync += snap_locate.eq(self.snapshot_request.p)
                        m.next = "SNAP_LOOKUP"
                with m.Elif((q.r_rdy | self.events.valid) & can_issue & room):
                    m.d.comb += take.eq(1)

            with m.State("SNAP_LOOKUP"):
                m.d.sync += snap_sub.eq(sub_rd.data.valid & (snap_locate[p.locate_bits:] == 0))
                m.next = "SNAP_READ"

            with m.State("SNAP_READ"):
                row = row_rd.data
                m.d.sync += [snap.valid.eq(1), snap.p.locate.eq(snap_locate),
                             snap.p.subscribed.eq(snap_sub)]
                with m.If(snap_sub):
                    m.d.sync += snap.p.complete.eq(Cat(complete(row.bid), complete(row.ask)))
                    for i in range(p.visible):
                        m.d.sync += [snap.p.bid[i].eq(row.bid.levels[i]),
                                     snap.p.ask[i].eq(row.ask.levels[i])]
                with m.Else():
                    m.d.sync += [snap.p.complete.eq(0b11), snap.p.bid.eq(0), snap.p.ask.eq(0)]
                m.next = "IDLE"

        m.d.sync += l_valid.eq(take)
        m.d.sync += l_ev.eq(head)      # every cycle: `l_valid` says whether it was taken

        # --- L: subscription, order lookup ---------------------------------------------------
        # (B's new side is made here, ahead of L, which forwards it.)
        b_out, b_saturated, b_overflow, b_missing = level_apply(
            m, p, "b", b_side_in, b_flags, b_side, b_price, b_add, b_shares, b_gone, b_enable)
        b_row_out = with_side(b_row, b_side, b_out, "b_row_out")
        sub = sub_rd.data
        subscribed = sub.valid & (l_ev.locate[p.locate_bits:] == 0)
        ref_tag = tag_of(l_ev.ref)
        match = [wire(m, holds(w, ref_tag, "l"), f"match{w}")
                 for w in range(p.ways)]
        free = [wire(m, ~ways[w].valid, f"free{w}") for w in range(p.ways)]
        any_match = wire(m, Cat(*match).any(), "any_match")
        go = wire(m, l_valid & subscribed & l_ev.ref_ok, "go")
        fwd_c = wire(m, b_valid & (b_slot == sub.slot), "fwd_c")
        fwd_d = wire(m, c_valid & (c_slot == sub.slot), "fwd_d")
        with m.If(l_valid & ~subscribed):
            m.d.comb += hits["unsubscribed"].eq(1)
        with m.Elif(l_valid & ~l_ev.ref_ok):
            m.d.comb += hits["ref_out_of_range"].eq(1)
        with m.If(x_valid & x_is_r):                 # R -> A: the event stays in X
            m.d.sync += [x_is_r.eq(0), x_after_r.eq(1)]
        with m.Else():
            m.d.sync += [x_valid.eq(go), x_after_r.eq(0),
                         x_is_r.eq(go & (l_ev.kind == BookEventKind.REPLACE))]
        # X's registers load whenever L holds an event (whether it goes on is `x_valid`): X
        # is never in R then, and `go`, late (it waits for the subscription), would otherwise
        # enable every one of them.
        with m.If(l_valid):
            # The event ahead on the same slot, in B (or in C, its row written in the same
            # cycle as this one is read), has its row in `c_row` when this one is in X:
            # events are issued at least 2 cycles apart (R holds the issue), so B is empty the
            # cycle after an event leaves it, and `c_row` keeps that event's row.
            m.d.sync += [x_ev.eq(l_ev), x_slot.eq(sub.slot), x_from_ram.eq(~fwd_c & ~fwd_d),
                         x_is_add.eq(l_ev.kind == BookEventKind.ADD), x_hit.eq(any_match),
                         x_hit_way.eq(_encode(match)),
                         x_op_side.eq(Mux(l_ev.kind == BookEventKind.ADD, l_ev.side, Cat(*(
                             match[w] & ways[w].side for w in range(p.ways))).any()))]
            m.d.sync += [x_ways[w].eq(ways[w]) for w in range(p.ways)]
            # compared on each source of an entry, then chosen, as `holds` does (the write's
            # enable, from B, only selects)
            l_reduce = _reduces(l_ev.kind)

            def takes(entry):
                more = l_ev.shares > entry.shares
                return Cat(l_reduce & more, ~l_reduce | more | (l_ev.shares == entry.shares))
            by_wr, by_lw = wire(m, takes(wr_val), "takes_wr"), wire(m, takes(lw_val), "takes_lw")
            for w in range(p.ways):
                took = Mux(from_wr[w], by_wr, Mux(lw_hit[w], by_lw, takes(ways_rd[w].data)))
                m.d.sync += Cat(x_over[w], x_gone[w]).eq(took)
            first(free, x_free_way, x_free_ok)

        # --- X: R (a replace's compares), then M (its removal made); or A (compare) -------
        ev = x_ev
        # the entry that holds the reference (any, when none does: then it is not used)
        entry = wire(m, Array(x_ways)[x_hit_way], "entry", entry_shape)
        kind = ev.kind
        is_add = kind == BookEventKind.ADD
        is_reduce = _reduces(kind)
        in_r = wire(m, x_valid & x_is_r, "in_r")
        in_a = wire(m, x_valid & ~x_is_r, "in_a")
        in_m = wire(m, in_a & x_after_r, "in_m")
        row_src = wire(m, Mux(x_from_ram, row_rd.data.as_value(), c_row.as_value()), "row_src",
                       row_shape)
        found = wire(m, x_hit & (entry.slot == x_slot), "found")

        # A (and R): the flags of the change; in R, those of the original order's removal
        # (the event is not an add: the price is the entry's, the order goes).
        remaining = entry.shares
        over = wire(m, x_over.bit_select(x_hit_way, 1), "over")
        amount = wire(m, Mux(is_reduce & ~over, ev.shares, remaining), "amount")
        gone = wire(m, x_gone.bit_select(x_hit_way, 1), "gone")   # amount == remaining
        add_ok = wire(m, is_add & (ev.shares != 0) & ~x_hit & x_free_ok, "add_ok")
        new_dup = wire(m, (new_held & ~new_freed).any(), "new_dup")
        add2_ok = wire(m, ev.new_ok & (ev.shares != 0) & ~new_dup & new_free_ok, "add2_ok")
        adding = is_add | x_after_r
        op_side = x_op_side
        op_price = wire(m, Mux(adding, ev.price, entry.price), "op_price")
        op_shares = wire(m, Mux(adding, ev.shares, amount), "op_shares")
        op_gone = wire(m, ~x_after_r & gone, "op_gone")
        op_enable = wire(m, Mux(x_after_r, x_found & add2_ok, add_ok | (~is_add & found)),
                         "op_enable")
        a_in = side_of(row_src, op_side, "a_in")

        def compare(name, price, gone):
            """`level_compare` on both sides, the side the event changes chosen after: the
            side, which waits for the entry, stands after the compares, not before them."""
            bid = level_compare(m, p, f"{name}b", row_src.bid, Const(0), price, gone, ev.shares)
            ask = level_compare(m, p, f"{name}a", row_src.ask, Const(1), price, gone, ev.shares)
            return wire(m, Mux(op_side, ask.as_value(), bid.as_value()), f"{name}_flags",
                        flags_layout(p))

        # An add's flags (the event's price) and a removal's (the entry's), both made, one
        # chosen: no price select before the compares. In R, both are kept (a replace's
        # removal, then its add, compared against the same side); M makes the removal and
        # corrects the add's flags for it. The new reference's set is checked in R.
        add_flags = compare("r", ev.price, Const(0))
        flags = wire(m, Mux(is_add, add_flags.as_value(),
                            compare("a", entry.price, op_gone).as_value()), "flags",
                     flags_layout(p))
        same_set = set_of(ev.new_ref) == set_of(ev.ref)
        new_tag = tag_of(ev.new_ref)
        freed = [same_set & found & (x_hit_way == w) for w in range(p.ways)]
        free2 = [wire(m, ~ways[w].valid | freed[w], f"free2_{w}") for w in range(p.ways)]
        # R's results load every cycle (only M, right after R, reads them): a late enable
        # would stand before each of them.
        m.d.sync += [r_side.eq(a_in), r_flags.eq(flags), r_add_flags.eq(add_flags),
                     x_found.eq(found), new_held.eq(Cat(*(holds(w, new_tag, "r")
                                                          for w in range(p.ways)))),
                     new_freed.eq(Cat(*freed))]
        m.d.sync += [r_less[i].eq(a_in.levels[i].shares - entry.shares) for i in range(p.depth)]
        with m.If(in_r):
            first(free2, new_free_way, new_free_ok)
            with m.If(found):
                gone_entry = Signal(entry_shape)
                m.d.comb += [gone_entry.eq(entry), gone_entry.valid.eq(0),
                             gone_entry.shares.eq(0)]
                schedule_write(x_hit_way, set_of(ev.ref), gone_entry)
            with m.Elif(~x_hit):
                m.d.comb += hits["unknown_ref"].eq(1)
            with m.Else():
                m.d.comb += hits["locate_mismatch"].eq(1)
        m_side, _, _, m_missing = level_apply(m, p, "m", r_side, r_flags, op_side, entry.price,
                                              Const(0), entry.shares, Const(1), x_found)
        m_flags = after_removal(m, p, "m", r_add_flags, r_flags, r_side, r_less, ev.shares,
                                x_found)

        # B's registers load every cycle (`b_valid` says whether they hold an event).
        with m.If(~x_after_r):         # after R, `b_row` keeps R's row for B
            m.d.sync += b_row.eq(row_src)
        m.d.sync += [
            b_side_in.eq(Mux(x_after_r, m_side.as_value(), a_in.as_value())),
            b_vis.eq(Mux(x_after_r, r_side.as_value(), a_in.as_value())),
            b_flags.eq(Mux(x_after_r, m_flags.as_value(), flags.as_value())),
            b_side.eq(op_side), b_price.eq(op_price), b_add.eq(adding),
            b_shares.eq(op_shares), b_gone.eq(op_gone), b_enable.eq(op_enable),
            b_slot.eq(x_slot), b_locate.eq(ev.locate), b_ts.eq(ev.timestamp),
            b_seq.eq(ev.sequence),
        ]
        with m.If(in_a):
            with m.If(x_after_r):
                with m.If(x_found):
                    m.d.comb += [
                        hits["ref_out_of_range"].eq(~ev.new_ok),
                        hits["bad_shares"].eq(ev.new_ok & (ev.shares == 0)),
                        hits["duplicate_ref"].eq(ev.new_ok & (ev.shares != 0) & new_dup),
                        hits["table_full"].eq(ev.new_ok & (ev.shares != 0) & ~new_dup
                                              & ~new_free_ok),
                    ]
                    new = Signal(entry_shape)
                    m.d.comb += [new.valid.eq(1), new.tag.eq(tag_of(ev.new_ref)),
                                 new.slot.eq(x_slot), new.side.eq(entry.side),
                                 new.price.eq(ev.price), new.shares.eq(ev.shares)]
                    schedule_write(new_free_way, set_of(ev.new_ref), new, add2_ok, fit=1)
            with m.Elif(is_add):
                m.d.comb += [
                    hits["bad_shares"].eq(ev.shares == 0),
                    hits["duplicate_ref"].eq((ev.shares != 0) & x_hit),
                    hits["table_full"].eq((ev.shares != 0) & ~x_hit & ~x_free_ok),
                ]
                new = Signal(entry_shape)
                m.d.comb += [new.valid.eq(1), new.tag.eq(tag_of(ev.ref)),
                             new.slot.eq(x_slot), new.side.eq(ev.side),
                             new.price.eq(ev.price), new.shares.eq(ev.shares)]
                schedule_write(x_free_way, set_of(ev.ref), new, add_ok, fit=1)
            with m.Elif(~x_hit):
                m.d.comb += hits["unknown_ref"].eq(1)
            with m.Elif(~found):
                m.d.comb += hits["locate_mismatch"].eq(1)
            with m.Else():
                m.d.comb += hits["over_execution"].eq(over)
                reduced = Signal(entry_shape)
                m.d.comb += [reduced.eq(entry), reduced.valid.eq(~gone),
                             # what remains when not gone (an entry gone is not read)
                             reduced.shares.eq(remaining - ev.shares)]
                schedule_write(x_hit_way, set_of(ev.ref), reduced)
        m.d.sync += b_valid.eq(in_a)

        # --- B: the change made ---------------------------------------------------------------
        m.d.comb += [
            wr_go.eq(wr_en & ~(wr_fit & saturates(b_flags))),
            hits["level_saturated"].eq(b_valid & b_saturated),
            hits["level_overflow"].eq(b_valid & b_overflow),
            hits["level_missing"].eq((b_valid & b_missing) | (in_m & m_missing)),
        ]
        m.d.sync += c_valid.eq(b_valid)
        with m.If(b_valid):
            m.d.sync += [c_row.eq(b_row_out), c_after.eq(b_out), c_vis.eq(b_vis),
                         c_side.eq(b_side), c_slot.eq(b_slot), c_locate.eq(b_locate),
                         c_ts.eq(b_ts), c_seq.eq(b_seq)]

        # --- C: the row written back, the BookUpdate ------------------------------------------
        changed = wire(m, Cat(*(c_after.levels[i].as_value() != c_vis.levels[i].as_value()
                                for i in range(p.visible))), "changed")
        any_change = wire(m, (changed != 0) | (complete(c_after) != complete(c_vis)),
                          "any_change")
        m.d.comb += [
            upd.locate.eq(c_locate), upd.slot.eq(c_slot), upd.side.eq(c_side),
            upd.changed.eq(changed),
            upd.complete.eq(Cat(complete(c_row.bid), complete(c_row.ask))),
            upd.bid_price.eq(c_row.bid.levels[0].price),
            upd.bid_shares.eq(c_row.bid.levels[0].shares),
            upd.ask_price.eq(c_row.ask.levels[0].price),
            upd.ask_shares.eq(c_row.ask.levels[0].shares),
            upd.timestamp.eq(c_ts), upd.sequence.eq(c_seq),
        ]
        for i in range(p.visible):
            m.d.comb += upd.levels[i].eq(c_after.levels[i])
        with m.If(c_valid):
            m.d.comb += [row_wr.en.eq(1), row_wr.addr.eq(c_slot), row_wr.data.eq(c_row)]
            m.d.comb += [out_q.w_en.eq(1), upd_changed.eq(any_change),
                         hits["updates"].eq(any_change)]

        # --- counters and alarms ------------------------------------------------------------
        hits_q = {name: Signal(name=f"hit_{name}") for name in BOOK_COUNTERS}
        m.d.sync += [hits_q[name].eq(hits[name]) for name in BOOK_COUNTERS]
        hits = hits_q                                # counters and alarms lag by a cycle
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


def _reduces(kind):
    """The event takes shares from an order (which may go)."""
    return ((kind == BookEventKind.EXECUTE) | (kind == BookEventKind.EXECUTE_AT_PRICE)
            | (kind == BookEventKind.CANCEL))


def _encode(onehot):
    """The number of the bit set in `onehot` (at most one is): an OR per bit of the number."""
    return Cat(*(Cat(*(bit for w, bit in enumerate(onehot) if w >> i & 1)).any()
                 for i in range(max(1, (len(onehot) - 1).bit_length()))))


__all__ = ["OrderBook", "BookParameters", "BOOK_LATENCY_CYCLES", "BOOK_CYCLES_PER_EVENT"]
