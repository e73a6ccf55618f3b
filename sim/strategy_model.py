"""Reference models of the strategies: `TakerModel`, `PairsModel` and `EngineModel`.

They are the executable specification of `tickwire.hdl.strategy` (see the docstrings of
`ThresholdTaker`, `PairsMeanReversion` and `StrategyEngine`): the same decisions, in the same
order, at the same cycles. Input: the table writes and BookUpdates, each with the cycle it was
presented; output: the intents with the cycle each was valid (and taken) at ``intents``.

Timing rules the model shares with the gateware:
- an update arriving at cycle t is evaluated against the tables as written by host writes
  presented at cycles < t (a write at cycle w applies from the update arriving at w + 1);
- the taker's intents of an update arriving at t are offered at t + `taker_latency` (+ the
  engine's ``taker_delay``), the pairs strategy's at t + `pairs_latency`, into one queue (see
  `EngineModel`);
- an event arriving at cycle e finds its slot in the subscription map as written before e,
  and is evaluated by the event taker at e + `EVENT_LOOKUP_CYCLES` (its routing and taker
  tables as written before then, the BBOs of the updates that arrived before then); its
  intent is offered at e + `EVENT_TAKER_LATENCY_CYCLES`.
"""

from collections import deque

from tickwire.hdl.strategy.engine import (
    EVENT_LOOKUP_CYCLES,
    EVENT_TAKER_LATENCY_CYCLES,
    QUEUE_DEPTH,
    STRATEGY_COUNTERS,
    StrategyMode,
)
from tickwire.hdl.strategy.pairs import PAIRS_LATENCY_CYCLES
from tickwire.hdl.strategy.taker import TAKER_LATENCY_CYCLES

BUY, SELL = 0, 1
IOC = 1
TAKER_ID, PAIRS_ID = 0, 1
OFF, TAKER, PAIRS, TAKER_EVENT = (StrategyMode.OFF.value, StrategyMode.TAKER.value,
                                  StrategyMode.PAIRS.value, StrategyMode.TAKER_EVENT.value)
ADD = 1                 # BookEventKind.ADD (ITCH A and F)
EVENT_BUY, EVENT_SELL = 0, 1   # BookEvent.side
LEG_A, LEG_B = 0, 1
FRACTION_BITS = 16


def intent(u, *, slot, locate, side, quantity, price, strategy):
    return dict(slot=slot, locate=locate, side=side, tif=IOC, strategy=strategy,
                quantity=quantity, price=price, sequence=u["sequence"], arrival=0)


class TakerModel:
    """`ThresholdTaker`: per slot parameters and, per side, the memory of its last fire."""

    def __init__(self):
        self.params = {}    # slot -> dict(enable, buy_price, sell_price, quantity, cooldown)
        self.memory = {}    # (slot, side) -> (price, cycle) of the last fire

    def write(self, slot, entry):
        self.params[slot] = dict(entry)
        self.memory.pop((slot, BUY), None)
        self.memory.pop((slot, SELL), None)

    def update(self, t, u, counts):
        """Intents (buy first) of the update `u` arriving at cycle `t` on a taker slot."""
        prm = self.params.get(u["slot"])
        if not prm or not prm["enable"]:
            return []
        if u["bid_shares"] == 0 or u["ask_shares"] == 0:
            counts["taker_one_sided"] += 1
        out = []
        for side, exists, price, wanted in (
                (BUY, u["ask_shares"] != 0, u["ask_price"], u["ask_price"] <= prm["buy_price"]),
                (SELL, u["bid_shares"] != 0, u["bid_price"],
                 u["bid_price"] >= prm["sell_price"])):
            if not (exists and wanted):
                continue
            last = self.memory.get((u["slot"], side))
            if last is not None and (price == last[0] or t - last[1] < prm["cooldown"]):
                counts["taker_cooldown"] += 1
                continue
            self.memory[(u["slot"], side)] = (price, t)
            counts["taker_fired"] += 1
            out.append(intent(u, slot=u["slot"], locate=u["locate"], side=side,
                              quantity=prm["quantity"], price=price, strategy=TAKER_ID))
        return out

    def event(self, t, e, slot, bbo, counts):
        """The intent (or none) of the Add `e` of `slot`, evaluated at cycle `t` against `bbo`
        = (bid, ask, has bid, has ask) of the slot's last BookUpdate. An ask Add takes the
        touch (buy) when it makes a new best ask (better than the ask shown; none shown: no)
        at or below ``buy_price``, a bid Add (sell) when it makes a new best bid at or above
        ``sell_price``; then the cooldown rule."""
        prm = self.params.get(slot)
        if not prm or not prm["enable"]:
            return []
        bid, ask, has_bid, has_ask = bbo
        price = e["price"]
        if e["side"] == EVENT_SELL:
            side = BUY
            wanted = has_ask and price < ask and price <= prm["buy_price"]
        else:
            side = SELL
            wanted = has_bid and price > bid and price >= prm["sell_price"]
        if not wanted:
            return []
        last = self.memory.get((slot, side))
        if last is not None and (price == last[0] or t - last[1] < prm["cooldown"]):
            counts["taker_cooldown"] += 1
            return []
        self.memory[(slot, side)] = (price, t)
        counts["taker_fired"] += 1
        return [intent(e, slot=slot, locate=e["locate"], side=side, quantity=prm["quantity"],
                       price=price, strategy=TAKER_ID)]


def spread(pair, a, b):
    """The spread of a pair in the host's units: doubled Price(4) with 16 fractional bits.
    `a`, `b`: (bid, ask) of the legs."""
    return ((a[0] + a[1]) << FRACTION_BITS) - pair["beta"] * (b[0] + b[1]) - pair["offset"]


class PairsModel:
    """`PairsMeanReversion`: the pair table, each pair's position, each slot's last BBO."""

    def __init__(self):
        self.pairs = {}      # pair -> dict(enable, slot_a, slot_b, beta, offset, entry, exit,
        #                               quantity, max_position); offset signed
        self.position = {}   # pair -> units (long A / short B is positive)
        self.bbo = {}        # slot -> (bid, ask, two_sided, locate) of its latest update

    def write(self, pair, entry):
        self.pairs[pair] = dict(entry)
        self.position[pair] = 0

    def see(self, u):
        """Every update, of any slot, is remembered (before it is evaluated)."""
        self.bbo[u["slot"]] = (u["bid_price"], u["ask_price"],
                               u["bid_shares"] != 0 and u["ask_shares"] != 0, u["locate"])

    def update(self, u, pair_id, leg, counts):
        """Intents (leg A first) of the update `u` of leg `leg` of pair `pair_id`."""
        pair = self.pairs.get(pair_id)
        if not pair or not pair["enable"] or pair["slot_b" if leg else "slot_a"] != u["slot"]:
            return []
        slots = (pair["slot_a"], pair["slot_b"])
        a, b = (self.bbo.get(s, (0, 0, False, 0)) for s in slots)
        if not (a[2] and b[2]):
            counts["pairs_one_sided"] += 1
            return []
        s = spread(pair, a, b)
        pos, limit = self.position.get(pair_id, 0), pair["max_position"]
        direction = 0                          # -1: sell A buy B; +1: buy A sell B
        if s > pair["entry"]:
            if pos > -limit:
                direction = -1
            else:
                counts["pairs_position_limit"] += 1
        elif s < -pair["entry"]:
            if pos < limit:
                direction = 1
            else:
                counts["pairs_position_limit"] += 1
        elif abs(s) <= pair["exit"] and pos != 0:
            direction = -1 if pos > 0 else 1
        if not direction:
            return []
        self.position[pair_id] = pos + direction
        counts["pairs_fired"] += 1
        q = pair["quantity"]
        if direction < 0:
            legs = ((SELL, a[0]), (BUY, b[1]))
        else:
            legs = ((BUY, a[1]), (SELL, b[0]))
        return [intent(u, slot=slot, locate=bbo[3], side=side, quantity=q, price=price,
                       strategy=PAIRS_ID)
                for slot, bbo, (side, price) in zip(slots, (a, b), legs, strict=True)]


class EngineModel:
    """`StrategyEngine`: the selection table, both strategies and the output queue.

    The queue holds `queue_depth` intents. Each cycle, the intents the strategies offer that
    cycle are taken in this order: the taker's buy, the taker's sell, the pair's two legs (both
    or neither); each only if the queue (as it was at the start of the cycle, plus those taken
    before it this cycle) has room, else it is lost and counted. The head of the queue (which may
    be an intent offered this very cycle) is at ``intents``; it leaves when ``ready``."""

    def __init__(self, *, queue_depth=QUEUE_DEPTH, taker_latency=TAKER_LATENCY_CYCLES,
                 pairs_latency=PAIRS_LATENCY_CYCLES, taker_delay=0, locates=None):
        self.queue_depth = queue_depth
        self.taker_latency = taker_latency + taker_delay
        self.pairs_latency = pairs_latency
        self.locates = locates            # the map's size (None: any locate)
        self.taker, self.pairs = TakerModel(), PairsModel()
        self.event_taker = TakerModel()
        self.selection = {}   # slot -> (mode, pair, leg)
        self.subscriptions = {}   # locate -> slot
        self.bbo = {}         # slot -> (bid, ask, has bid, has ask) of its latest update
        self.counters = dict.fromkeys(STRATEGY_COUNTERS, 0)
        self.alarms = {"lost": 0, "position_limit": 0}

    def write(self, table, index, entry):
        if table == "selection":
            mode = int(getattr(entry["mode"], "value", entry["mode"]))
            self.selection[index] = (mode, entry.get("pair", 0), entry.get("leg", 0))
        elif table == "taker_params":
            self.taker.write(index, entry)
            self.event_taker.write(index, entry)
        elif table == "subscribe":
            locate = entry["locate"]
            if self.locates is None or locate < self.locates:
                if entry.get("enable", 1):
                    self.subscriptions[locate] = entry["slot"]
                else:
                    self.subscriptions.pop(locate, None)
        elif table == "pair_params":
            self.pairs.write(index, entry)
        else:
            raise ValueError(f"no table {table!r}")

    def evaluate(self, t, u):
        """(taker intents, pairs intents) of the update `u` arriving at cycle `t`."""
        self.counters["updates"] += 1
        mode, pair, leg = self.selection.get(u["slot"], (OFF, 0, 0))
        self.pairs.see(u)
        before = self.counters["pairs_position_limit"]
        taker = self.taker.update(t, u, self.counters) if mode == TAKER else []
        pairs = self.pairs.update(u, pair, leg, self.counters) if mode == PAIRS else []
        if self.counters["pairs_position_limit"] != before:
            self.alarms["position_limit"] = 1
        return taker, pairs

    def evaluate_event(self, t, e, slot):
        """The event taker's intents of the event `e` of `slot`, evaluated at cycle `t`."""
        if self.selection.get(slot, (OFF, 0, 0))[0] != TAKER_EVENT:
            return []
        bbo = self.bbo.get(slot, (0, 0, False, False))
        return self.event_taker.event(t, e, slot, bbo, self.counters)

    def run(self, updates=(), writes=(), *, events=(), cycles=None, ready=None):
        """Run to `cycles` (default: until everything has left). `updates`: (cycle, update);
        `events`: (cycle, BookEvent dict); `writes`: (cycle, table, index, entry) (for
        ``subscribe``, the entry holds locate, slot, enable); `ready(cycle)`: the consumer's
        ready (default always). Returns [(cycle, intent)]: each intent with the cycle it
        left."""
        by_cycle, event_at = {}, {}
        for t, u in updates:
            if t in by_cycle:
                raise ValueError(f"two updates at cycle {t}")
            by_cycle[t] = u
        for t, e in events:
            if t in event_at:
                raise ValueError(f"two events at cycle {t}")
            event_at[t] = e
        host = {}
        for w, table, index, entry in writes:
            host.setdefault(w, []).append((table, index, entry))
        offered = {}    # cycle -> [event taker intents, taker intents, pairs intents]
        looked_up = {}  # cycle -> (event, slot): events due at the event taker
        queue, out = deque(), []
        last = max([*by_cycle, *event_at, *host, -1])
        end = cycles if cycles is not None else last + self.pairs_latency + 1
        lag = EVENT_TAKER_LATENCY_CYCLES - EVENT_LOOKUP_CYCLES
        c = 0
        while c < end or (cycles is None and (queue or any(k >= c for k in offered)
                                              or any(k >= c for k in looked_up))):
            if c in event_at:
                e = event_at[c]
                slot = self.subscriptions.get(e["locate"])
                if e["kind"] == ADD and e["shares"] and slot is not None:
                    looked_up[c + EVENT_LOOKUP_CYCLES] = (e, slot)
            if c in looked_up:
                e, slot = looked_up.pop(c)
                fast = self.evaluate_event(c, e, slot)
                offered.setdefault(c + lag, [[], [], []])[0].extend(fast)
            if c in by_cycle:
                u = by_cycle[c]
                taker, pairs = self.evaluate(c, u)
                offered.setdefault(c + self.taker_latency, [[], [], []])[1].extend(taker)
                offered.setdefault(c + self.pairs_latency, [[], [], []])[2].extend(pairs)
                self.bbo[u["slot"]] = (u["bid_price"], u["ask_price"], u["bid_shares"] != 0,
                                       u["ask_shares"] != 0)
            for table, index, entry in host.get(c, ()):
                self.write(table, index, entry)
            fast, taker, pairs = offered.pop(c, ([], [], []))
            level = len(queue)
            for item in fast + taker:
                if level < self.queue_depth:
                    queue.append(item)
                    level += 1
                else:
                    self._lost(1)
            if pairs:
                if level + len(pairs) <= self.queue_depth:
                    queue.extend(pairs)
                else:
                    self._lost(len(pairs))
            if queue and (ready is None or ready(c)):
                out.append((c, queue.popleft()))
                self.counters["intents"] += 1
            c += 1
        return out

    def _lost(self, n):
        self.counters["intents_lost"] += n
        self.alarms["lost"] = 1


def table_writes(writes):
    """Port-form writes (cycle, port, {index, ...fields}), as `run_strategy` takes them, in the
    model's form (cycle, table, index, entry)."""
    return [(c, port, d.get("index"), {k: v for k, v in d.items() if k != "index"})
            for c, port, d in writes]


def random_scenario(rng, *, slots=6, pairs=4, updates=100, base=1000, locates=16):
    """A random script for the engine: routing and parameters for `slots` book slots and
    `pairs` pairs, subscriptions of locates to slots, then `updates` BookUpdates (bursts of
    back-to-back updates, repeats of one slot, one-sided books, prices walking across the
    thresholds) and BookEvents (Adds on both sides around the touch, some with zero shares,
    other kinds, locates not subscribed or beyond the map's `locates`) with table rewrites and
    resubscriptions in between, and a consumer that is sometimes not ready. `rng` is a
    `random.Random`.

    Returns (writes in port form, updates as (cycle, dict), events as (cycle, dict), set of
    cycles not ready)."""
    tick = 1 << (FRACTION_BITS + 1)
    writes, cycle = [], 0
    mids = {s: base + rng.randint(-20, 20) for s in range(slots)}

    def taker_entry(slot):
        return dict(index=slot, enable=int(rng.random() < 0.9),
                    buy_price=mids[slot] + rng.randint(-4, 3),
                    sell_price=mids[slot] + rng.randint(-3, 4), quantity=rng.randint(1, 500),
                    cooldown=rng.choice([0, 0, 1, 2, 3, 8, 30]))

    def selection_entry(slot):
        mode = rng.choice([OFF, TAKER, TAKER, PAIRS, PAIRS, TAKER_EVENT, TAKER_EVENT])
        return dict(index=slot, mode=mode, pair=rng.randrange(pairs), leg=rng.randrange(2))

    def pair_entry(index, selection):
        legs = [[s for s, e in selection.items() if e["mode"] == PAIRS and e["pair"] == index
                 and e["leg"] == leg] for leg in (0, 1)]
        a = rng.choice(legs[0]) if legs[0] and rng.random() < 0.9 else rng.randrange(slots)
        b = rng.choice(legs[1]) if legs[1] and rng.random() < 0.9 else rng.randrange(slots)
        beta = rng.choice([1 << 16, rng.randint(1 << 15, 1 << 17)])
        mean = ((2 * mids[a]) << FRACTION_BITS) - beta * 2 * mids[b]
        entry = rng.randint(0, 6) * tick + rng.randint(0, tick)
        return dict(index=index, enable=int(rng.random() < 0.9), slot_a=a, slot_b=b, beta=beta,
                    offset=mean + rng.randint(-2, 2) * tick, entry=entry,
                    exit=rng.randint(0, entry), quantity=rng.randint(1, 100),
                    max_position=rng.randint(0, 3))

    selection = {}
    subscribed = {}                   # locate -> slot, as subscribed last

    def subscription(locate):
        slot = rng.randrange(slots)
        enable = int(rng.random() < 0.9)
        if enable:
            subscribed[locate] = slot
        return dict(locate=locate, slot=slot, enable=enable)

    for locate in rng.sample(range(locates), min(locates, slots + 2)):
        writes.append((cycle, "subscribe", subscription(locate)))
        cycle += 1
    for slot in range(slots):
        selection[slot] = selection_entry(slot)
        writes.append((cycle, "selection", selection[slot]))
        writes.append((cycle, "taker_params", taker_entry(slot)))
        cycle += 1
    for index in range(pairs):
        writes.append((cycle, "pair_params", pair_entry(index, selection)))
        cycle += 1

    out, events, slot, sequence = [], [], 0, 0
    cycle += rng.randint(0, 3)
    by_slot = {}
    for locate, s in subscribed.items():
        by_slot.setdefault(s, []).append(locate)

    def event(at):
        """An event at cycle `at`, mostly an Add on a subscribed locate near its touch."""
        s = rng.randrange(slots)
        choices = by_slot.get(s) or [rng.randrange(locates)]
        locate = rng.choice(choices) if rng.random() < 0.9 else rng.randrange(2 * locates)
        side = rng.randrange(2)               # 0 a bid (buy side), 1 an ask
        price = mids[s] + (1 if side else -1) * rng.randint(-3, 3)
        kind = ADD if rng.random() < 0.85 else rng.randint(2, 6)
        shares = 0 if rng.random() < 0.05 else rng.randint(1, 900)
        events.append((at, dict(kind=kind, side=side, locate=locate, price=max(0, price),
                                shares=shares, sequence=sequence, order_ref=at)))

    for _ in range(updates):
        if rng.random() > 0.4:
            slot = rng.randrange(slots)
        mids[slot] += rng.choice([-2, -1, -1, 0, 1, 1, 2])
        half = rng.choice([0, 1, 1, 2])
        bid, ask = mids[slot] - half, mids[slot] + half + rng.randint(0, 1)
        bid_shares = 0 if rng.random() < 0.08 else rng.randint(1, 1000)
        ask_shares = 0 if rng.random() < 0.08 else rng.randint(1, 1000)
        sequence += rng.randint(1, 3)
        out.append((cycle, dict(slot=slot, locate=200 + slot, sequence=sequence,
                                bid_price=bid if bid_shares or rng.random() < 0.3 else 0,
                                bid_shares=bid_shares, ask_shares=ask_shares,
                                ask_price=ask if ask_shares or rng.random() < 0.3 else 0)))
        for _ in range(rng.choice([0, 1, 1, 2])):
            at = cycle + rng.randint(0, 3)
            if all(at != c for c, _ in events):
                event(at)
        r = rng.random()
        at = cycle + rng.choice([0, 0, 1])
        if r < 0.01:
            writes.append((at, "subscribe", subscription(rng.randrange(locates))))
        elif r < 0.03:
            writes.append((at, "taker_params", taker_entry(rng.randrange(slots))))
        elif r < 0.05:
            s = rng.randrange(slots)
            selection[s] = selection_entry(s)
            writes.append((at, "selection", selection[s]))
        elif r < 0.07:
            writes.append((at, "pair_params", pair_entry(rng.randrange(pairs), selection)))
        cycle += rng.choice([1, 1, 1, 1, 2, 3, 9])
    seen, unique = set(), []
    for w in writes:                  # one write per port per cycle (the bank's strobes)
        if (w[0], w[1]) not in seen:
            seen.add((w[0], w[1]))
            unique.append(w)
    closed = set()
    for _ in range(rng.choice([0, 0, 1, 3])):
        start = rng.randrange(cycle + 1)
        closed.update(range(start, start + rng.randint(1, 30)))
    events.sort(key=lambda e: e[0])
    return unique, out, events, closed
