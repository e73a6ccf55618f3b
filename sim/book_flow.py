"""Deterministic BookEvent streams for the order book's tests, soak and benchmark.

`random_events` draws adds, partial and full executions, cancels, deletes and replaces over
many symbols around a moving touch, with bad input mixed in at a chosen rate (unknown
references, over-executions, replaces of missing orders, references reused after delete,
unsubscribed locates). `events_from_itch` turns ITCH messages into the same dicts, so a
feed-handler scenario can drive the book.
"""

import random

from tickwire.hdl.feed.itch_format import MESSAGES

from . import itch
from .book_model import ADD, CANCEL, DELETE, EXECUTE, EXECUTE_AT_PRICE, REPLACE, event


def random_events(count, *, seed=1, locates=(1, 2, 3, 4), spread=8, tick=100, bad=0.02,
                  unsubscribed=(), max_shares=5000, replace_share=0.1, drift=4,
                  live_target=2000):
    rng = random.Random(seed)
    bases = {loc: rng.randrange(100, 1000) * tick * 10 for loc in locates}
    mids = dict(bases)
    live = _Live()       # ref -> (locate, side, price, shares), with O(1) random choice
    dead = []            # references deleted (reused later, sometimes)
    next_ref = 1
    out = []
    for n in range(count):
        ts, seq = 34_200_000_000_000 + n * 1000, n + 1
        r = rng.random()
        if r < bad:
            choice = rng.randrange(4)
            if choice == 0:
                out.append(event(EXECUTE, locate=rng.choice(locates), order_ref=next_ref + 10**6,
                                 shares=10, timestamp=ts, sequence=seq))
            elif choice == 1 and live:
                ref = live.choice(rng)
                locate, side, price, shares = live.pop(ref)
                out.append(event(EXECUTE, locate=locate, order_ref=ref, shares=shares + 7,
                                 timestamp=ts, sequence=seq))
                dead.append(ref)
            elif choice == 2:
                out.append(event(REPLACE, locate=rng.choice(locates), order_ref=next_ref + 10**6,
                                 new_ref=next_ref, shares=100, price=mids[locates[0]],
                                 timestamp=ts, sequence=seq))
            elif unsubscribed:
                out.append(event(ADD, locate=rng.choice(unsubscribed), order_ref=next_ref + 2**20,
                                 side=0, shares=100, price=1000, timestamp=ts, sequence=seq))
            continue
        if r < (0.5 if len(live) < live_target else 0.3) or len(live) < 8:
            locate = rng.choice(locates)
            side = rng.randrange(2)
            step = mids[locate] + tick * rng.choice((-1, 0, 0, 1))
            mid = mids[locate] = min(max(step, bases[locate] - drift * tick),
                                     bases[locate] + drift * tick)
            offset = tick * rng.randrange(0, spread)
            price = mid - tick - offset if side == 0 else mid + tick + offset
            if dead and rng.random() < 0.05:
                ref = dead.pop(rng.randrange(len(dead)))        # reused after delete
            else:
                ref, next_ref = next_ref, next_ref + rng.choice((1, 1, 1, 2, 7))
            shares = rng.randrange(1, max_shares)
            live[ref] = (locate, side, price, shares)
            out.append(event(ADD, locate=locate, order_ref=ref, side=side, shares=shares,
                             price=price, timestamp=ts, sequence=seq))
            continue
        ref = live.choice(rng)
        locate, side, price, shares = live[ref]
        r = rng.random()
        if r < 0.3:
            kind = rng.choice((EXECUTE, EXECUTE_AT_PRICE, CANCEL))
            amount = rng.randrange(1, shares + 1)
            out.append(event(kind, locate=locate, order_ref=ref, shares=amount,
                             price=price if kind == EXECUTE_AT_PRICE else 0, timestamp=ts,
                             sequence=seq))
            if amount == shares:
                del live[ref]
                dead.append(ref)
            else:
                live[ref] = (locate, side, price, shares - amount)
        elif r < 1 - replace_share:
            out.append(event(DELETE, locate=locate, order_ref=ref, timestamp=ts, sequence=seq))
            del live[ref]
            dead.append(ref)
        else:
            new_ref, next_ref = next_ref, next_ref + 1
            across = rng.random() < 0.2          # a replace that moves across the spread
            mid = mids[locate]
            new_price = (mid + tick * rng.randrange(1, 3) if side == 0 else
                         mid - tick * rng.randrange(1, 3)) if across else \
                max(tick, price + tick * rng.choice((-1, 0, 1)))
            new_shares = rng.randrange(1, max_shares)
            out.append(event(REPLACE, locate=locate, order_ref=ref, new_ref=new_ref,
                             shares=new_shares, price=new_price, timestamp=ts, sequence=seq))
            del live[ref]
            dead.append(ref)
            live[new_ref] = (locate, side, new_price, new_shares)
    return out


class _Live(dict):
    """A dict that also keeps its keys in a list, for O(1) uniform random choice."""

    def __init__(self):
        super().__init__()
        self.keys_, self.index = [], {}

    def __setitem__(self, key, value):
        if key not in self:
            self.index[key] = len(self.keys_)
            self.keys_.append(key)
        super().__setitem__(key, value)

    def __delitem__(self, key):
        super().__delitem__(key)
        i, last = self.index.pop(key), self.keys_.pop()
        if last != key:
            self.keys_[i], self.index[last] = last, i

    def pop(self, key):
        value = self[key]
        del self[key]
        return value

    def choice(self, rng):
        return self.keys_[rng.randrange(len(self.keys_))]


_KINDS = {b"A": ADD, b"F": ADD, b"E": EXECUTE, b"C": EXECUTE_AT_PRICE, b"X": CANCEL,
          b"D": DELETE, b"U": REPLACE}


def events_from_itch(messages):
    """ITCH messages -> BookEvent dicts (book messages only), decoded by `tickwire.sim.itch`."""
    out = []
    for sequence, message in enumerate(messages, start=1):
        t = bytes(message[0:1])
        if t not in _KINDS:
            continue
        f = itch.decode(message)
        kind = _KINDS[t]
        e = event(kind, locate=f["stock_locate"], timestamp=f["timestamp"], sequence=sequence)
        if t in b"AF":
            e.update(order_ref=f["order_ref"], side=int(f["side"] == b"S"), shares=f["shares"],
                     price=f["price"])
        elif t in b"EC":
            e.update(order_ref=f["order_ref"], shares=f["executed_shares"])
            if t == b"C":
                e["price"] = f["execution_price"]
        elif t == b"X":
            e.update(order_ref=f["order_ref"], shares=f["cancelled_shares"])
        elif t == b"D":
            e.update(order_ref=f["order_ref"])
        else:
            e.update(order_ref=f["original_ref"], new_ref=f["new_ref"], shares=f["shares"],
                     price=f["price"])
        out.append(e)
    return out


assert set(_KINDS) <= set(MESSAGES)
