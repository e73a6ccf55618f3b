"""The level-change circuit of the order book, in two halves that a pipeline register can split.

`level_compare` looks at one side of a book row and the change to make (add `shares` and one
order at `price`, or remove `shares`, and the order if `gone`): which stored levels are used,
which one holds `price`, which are better, whether each level's aggregate would overflow, whether
the price falls in the hidden zone. `level_apply` takes those flags (registered or not) and
makes the new side: the increment (refused if it saturates) or decrement at the matching
level, the insertion with its shift, the removal with its shift up, the hidden-zone
bookkeeping. The compare half holds only carry chains fed by the side (price compares, the
aggregate's overflow) and price equalities built as balanced trees (`equal`); every reduction
over levels is left to the apply half.
`after_removal` corrects an add's flags for a removal applied ahead of it (a replace: both
compared against the same side, in one cycle).
"""

from amaranth.hdl import Cat, Mux, Signal, unsigned
from amaranth.lib import data

from tickwire.hdl.book.records import SHARES_BITS, side_layout
from tickwire.hdl.signals import wire


def flags_layout(p):
    """What `level_compare` finds about one side (one bit per stored level in each mask)."""
    L = p.depth
    return data.StructLayout({
        "used": unsigned(L), "match": unsigned(L), "better": unsigned(L),
        "carry": unsigned(L),          # the level's aggregate plus `added` overflows
        "emptied": unsigned(L),        # the level's order count equals `gone`
        "in_hidden": 1,
    })


def equal(m, a, b, name):
    """`a == b` as a balanced tree of kept nets (2 bit pairs per LUT, then ANDs of 4), its
    last AND left to the caller. Left to itself the mapper, which counts a carry chain as the
    longer path and not the routing between LUTs, chains a wide compare LUT after LUT."""
    nodes = [wire(m, a[i:i + 2] == b[i:i + 2], f"{name}_eq{i // 2}", keep=True)
             for i in range(0, len(a), 2)]
    level = 0
    while len(nodes) > 4:
        level += 1
        nodes = [wire(m, Cat(*nodes[i:i + 4]).all(), f"{name}_and{level}_{i // 4}",
                      keep=True)
                 for i in range(0, len(nodes), 4)]
    return Cat(*nodes).all()


def saturates(f):
    """An add at the flags' price would take its level past the limit."""
    return (f.match & f.carry).any()


def level_compare(m, p, name, side_in, side, price, gone, added):
    """Flags of one change to `side_in` (see `flags_layout`). `added` is what an add adds
    (the event's shares: only adds use the carry, and a value that does not wait for the
    add/remove decision shortens the path)."""
    f = Signal(flags_layout(p), name=f"{name}_flags")
    for i in range(p.depth):
        lv = side_in.levels[i]
        used = wire(m, lv.orders != 0, f"{name}_used{i}")
        summed = wire(m, lv.shares + added, f"{name}_sum{i}", unsigned(SHARES_BITS + 1))
        m.d.comb += [
            f.used[i].eq(used),
            f.match[i].eq(used & equal(m, lv.price, price, f"{name}_price{i}")),
            f.better[i].eq(used & Mux(side, lv.price < price, lv.price > price)),
            f.carry[i].eq(summed[SHARES_BITS]),
            # `gone` (late: it waits for the entry's shares) chooses between two compares
            f.emptied[i].eq(Mux(gone, lv.orders == 1, ~used)),
        ]
    hidden, boundary = side_in.hidden, side_in.boundary
    m.d.comb += f.in_hidden.eq((hidden != 0) & ~Mux(side, price < boundary, price > boundary))
    return f


def level_apply(m, p, name, side_in, f, side, price, add, shares, gone, enable):
    """The side after the change, from its flags `f`. Returns (side, saturated, overflow,
    missing); with `enable` low the side is unchanged. An add that saturates its level
    changes nothing (`saturated`)."""
    L = p.depth
    levels = [side_in.levels[i] for i in range(L)]
    match = [f.match[i] for i in range(L)]
    better = [f.better[i] for i in range(L)]
    hit = wire(m, f.match.any(), f"{name}_hit")
    empties = wire(m, (f.match & f.emptied).any(), f"{name}_empties")
    full = f.used[L - 1]
    hidden = side_in.hidden
    saturated = wire(m, enable & add & saturates(f), f"{name}_saturated")
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
                            m.d.comb += [out.levels[i].shares.eq(lv.shares + shares),
                                         out.levels[i].orders.eq(lv.orders + 1)]
            with m.Elif(f.in_hidden):
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


def after_removal(m, p, name, fa, fr, side_in, less, added, enable):
    """The flags `fa` of an add, found against `side_in`, corrected for a removal made first
    (its flags `fr`, applied by `level_apply` if `enable`): what `level_compare` would find
    against the side after the removal, without comparing again. A level emptied moves the
    ones below it up (their flags too); a level only reduced keeps its flags but its carry,
    found from `less` (each level's shares minus the removed shares, as `level_apply`
    computes them); the hidden zone's last order leaving empties it."""
    L = p.depth
    f = Signal(flags_layout(p), name=f"{name}_flags")
    hit = fr.match.any()
    shifted = wire(m, enable & (fr.match & fr.emptied).any(), f"{name}_shifted")
    reduced = wire(m, enable & hit & ~(fr.match & fr.emptied).any(), f"{name}_reduced")
    for i in range(L):
        moved = shifted & fr.match[:i + 1].any()          # level i takes level i + 1
        for field in ("used", "match", "better", "carry", "emptied"):
            flag = getattr(fa, field)
            below = flag[i + 1] if i + 1 < L else 0
            m.d.comb += getattr(f, field)[i].eq(Mux(moved, below, flag[i]))
        summed = wire(m, less[i] + added, f"{name}_sum{i}", unsigned(SHARES_BITS + 1))
        with m.If(reduced & fr.match[i]):
            m.d.comb += f.carry[i].eq(summed[SHARES_BITS])
    emptied_hidden = enable & ~hit & (side_in.hidden == 1)
    m.d.comb += f.in_hidden.eq(fa.in_hidden & ~emptied_hidden)
    return f
