"""Deterministic market scenarios: ITCH 5.0 order flow, MoldUDP64 packets, A/B frames.

The default scenario is what `tickwire sim` replays: several symbols, a mid-price random
walk, Poisson-like arrivals of adds, executions, cancels, deletes and replaces around the
touch, with control messages at the start and end of the session.
"""

import random
from typing import NamedTuple

from . import itch
from . import moldudp64 as mold
from .feed_model import FilterEntry
from .feed_run import Frame
from .frames import ip, udp_frame

DEFAULT_SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "AVGO")
FEED_GROUP_A = ip("233.54.12.111")
FEED_GROUP_B = ip("233.49.196.111")
FEED_PORT = 26477


class Scenario(NamedTuple):
    session: bytes
    messages: list        # ITCH messages, sequence numbers 1..len
    frames: list          # Frame list as presented at MAC rx (A and B interleaved)
    filters: list         # FilterEntry list for the feed handler


def default_filters(feed=0):
    return [FilterEntry(FEED_GROUP_A, FEED_PORT, feed, 0),
            FilterEntry(FEED_GROUP_B, FEED_PORT, feed, 1)]


def order_flow(count, *, seed=1, symbols=DEFAULT_SYMBOLS):
    """`count` ITCH messages of a trading session (control messages included)."""
    rng = random.Random(seed)
    ns = 9 * 3600 * 10**9 + 30 * 60 * 10**9
    messages = [itch.encode(b"S", timestamp=ns, event_code=b"O")]
    mids = {}
    for locate, symbol in enumerate(symbols, start=1):
        messages.append(itch.encode(b"R", stock_locate=locate, timestamp=ns, stock=symbol,
                                    market_category=b"Q", financial_status=b"N",
                                    round_lot_size=100, round_lots_only=b"N",
                                    issue_classification=b"C", issue_subtype=b"Z",
                                    authenticity=b"P", short_sale_threshold=b"N",
                                    ipo_flag=b"N", luld_tier=b"1", etp_flag=b"N",
                                    inverse=b"N"))
        messages.append(itch.encode(b"H", stock_locate=locate, timestamp=ns, stock=symbol,
                                    trading_state=b"T"))
        mids[locate] = rng.randrange(20, 900) * 10_000
    live = {locate: {} for locate in mids}   # locate -> {ref: [side, shares, price]}
    next_ref, match = 1, 1
    while len(messages) < count - 1:
        ns += int(rng.expovariate(1 / 2000)) + 1
        locate = rng.choice(list(mids))
        mids[locate] = max(10_000, mids[locate] + 100 * rng.choice((-1, 0, 0, 1)))
        orders, common = live[locate], dict(stock_locate=locate, timestamp=ns)
        action = rng.random()
        if action < 0.45 or len(orders) < 4:
            side = rng.choice(b"BS")
            offset = 100 * int(rng.expovariate(1 / 4)) + 100
            price = mids[locate] - offset if side == ord("B") else mids[locate] + offset
            shares = 100 * rng.randrange(1, 20)
            kind = b"F" if rng.random() < 0.1 else b"A"
            extra = {"attribution": b"GSCO"} if kind == b"F" else {}
            messages.append(itch.encode(kind, order_ref=next_ref, side=bytes([side]),
                                        shares=shares, stock=DEFAULT_SYMBOLS[(locate - 1) % 8],
                                        price=price, **common, **extra))
            orders[next_ref] = [side, shares, price]
            next_ref += 1
            continue
        ref = rng.choice(list(orders))
        side, shares, price = orders[ref]
        if action < 0.60:
            executed = min(shares, 100 * rng.randrange(1, 5))
            if rng.random() < 0.2:
                messages.append(itch.encode(b"C", order_ref=ref, executed_shares=executed,
                                            match_number=match, printable=b"Y",
                                            execution_price=price, **common))
            else:
                messages.append(itch.encode(b"E", order_ref=ref, executed_shares=executed,
                                            match_number=match, **common))
            match += 1
            orders[ref][1] -= executed
        elif action < 0.72:
            cancelled = min(shares, 100 * rng.randrange(1, 3))
            messages.append(itch.encode(b"X", order_ref=ref, cancelled_shares=cancelled,
                                        **common))
            orders[ref][1] -= cancelled
        elif action < 0.90:
            messages.append(itch.encode(b"D", order_ref=ref, **common))
            orders[ref][1] = 0
        elif action < 0.97:
            new_price = price + 100 * rng.choice((-2, -1, 1, 2))
            new_shares = 100 * rng.randrange(1, 20)
            messages.append(itch.encode(b"U", original_ref=ref, new_ref=next_ref,
                                        shares=new_shares, price=max(100, new_price), **common))
            orders[next_ref] = [side, new_shares, max(100, new_price)]
            orders[ref][1] = 0
            next_ref += 1
        else:
            messages.append(itch.encode(b"P", order_ref=0, side=b"B", shares=100,
                                        stock=DEFAULT_SYMBOLS[(locate - 1) % 8],
                                        price=mids[locate], match_number=match, **common))
            match += 1
        if orders[ref][1] <= 0:
            del orders[ref]
    messages.append(itch.encode(b"S", timestamp=ns + 1, event_code=b"C"))
    return messages[:count]


def ab_frames(session, messages, *, seed=1, max_payload=1400, loss=(0.0, 0.0),
              duplicate=(0.0, 0.0), idle=4, end_of_session=True, first_sequence=1):
    """Frames of both lines, interleaved A then B per packet, with independent random loss and
    duplication per line (`loss=(a, b)`). `messages` have sequence numbers from
    `first_sequence` on (a later part of a session, as the closed loop sends it)."""
    rng = random.Random(seed)
    packets = mold.pack_messages(session, first_sequence, messages, max_payload)
    if end_of_session:
        packets.append(mold.end_of_session(session, first_sequence + len(messages)))
    frames = []
    for index, packet in enumerate(packets):
        for line, group in enumerate((FEED_GROUP_A, FEED_GROUP_B)):
            if rng.random() < loss[line]:
                continue
            frame = udp_frame(packet, dst_ip=group, dst_port=FEED_PORT, identification=index)
            copies = 2 if rng.random() < duplicate[line] else 1
            frames.extend([Frame(frame, idle_after=idle)] * copies)
    return frames


def default_scenario(messages=20_000, seed=2026):
    session = b"20261122A1"
    flow = order_flow(messages, seed=seed)
    frames = ab_frames(session, flow, seed=seed, loss=(0.02, 0.02))
    return Scenario(session, flow, frames, default_filters())
