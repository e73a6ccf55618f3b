"""Declarative configuration files (TOML), validated against the build before anything is
written.

A configuration is one or more files; each top-level section may appear in one file only,
and names in one file may refer to symbols declared in another (a desk keeps its symbols and
strategies in one file and its risk limits in another). Every value is checked against the
register map of the build it will be written to (table sizes, field widths, enums, the book's
build parameters) and against the section's own rules; every problem is reported with its
file, its field and the rule; nothing is written unless there is none. Configuration
registers are read back after writing; table entries written through strobes (symbols,
strategy parameters, limits) cannot be read back and are counted instead.

Sections (the examples in ``host/examples/`` are complete, commented files):

``[[feed.filter]]``
    group, port, feed, line ("A"/"B"), enabled: which multicast groups carry which feed.
``[[symbol]]``
    name (up to 8 characters), locate (the feed's stock locate), slot (optional; the next free
    book slot otherwise): the book follows the locate in that slot, and orders carry the name.
``[[strategy.taker]]``
    symbol, buy_at_or_below and/or sell_at_or_above (dollars, 4 decimals at most), quantity,
    cooldown_cycles: the threshold taker on that symbol.
``[[strategy.pair]]``
    leg_a, leg_b, beta, offset, entry, exit (spread in dollars: mid(A) - beta * mid(B) -
    offset), quantity (per leg), max_position (units): pairs mean reversion.
``[risk]``
    slot_throttle and global_throttle (``{interval_cycles, burst}``: one order per interval,
    bursts of up to burst), auto_kill (``{rejects, window_cycles}``).
``[risk.default]``, ``[risk.symbol.NAME]``
    enabled, max_quantity, max_notional (dollars), collar_bps, position_limit (shares): every
    declared symbol gets the defaults with its own overrides.
``[order]``
    the order session's identity: dst_mac, src_mac, src_ip, dst_ip, src_port, dst_port, ttl,
    display, capacity, intermarket_sweep, cross_type (OUCH 5.0 codes), clordid_prefix (6
    characters). TCP sequence and acknowledgement numbers belong to the live session and are
    set through the API (`tickwire.host.api.start_session`), not in a file.
"""

import dataclasses
import ipaddress
import re
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path

MULTICAST = ipaddress.IPv4Network("224.0.0.0/4")
PRICE_SCALE = 10_000                 # ITCH Price(4) and OUCH prices: 4 implied decimals
PRICE_MAX = (1 << 32) - 1            # the largest Price(4)
SECTIONS = ("feed", "symbol", "strategy", "risk", "order")
SYMBOL_NAME = re.compile(r"^[A-Z0-9][A-Z0-9 .+/=-]{0,7}$")
MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
OUCH_CODES = {"display": "YNA", "capacity": "APRO", "intermarket_sweep": "YN",
              "cross_type": "NOCHSRE"}   # OUCH 5.0 Enter Order, section 2.1
SPREAD_FRACTION = 1 << 16            # the pairs strategy's spread: doubled Price(4), 16.16
OUCH_MAX_QUANTITY = 999_999          # OUCH 5.0 Enter Order: quantity below 1,000,000
OUCH_MAX_PRICE = 1_999_999_900       # OUCH 5.0: $199,999.99 is the highest limit price


class ConfigError(ValueError):
    """Every problem found in a configuration, one per line."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclasses.dataclass
class Write:
    register: str
    value: object
    index: int | None = None


class Plan(dict):
    """What a configuration asks for: {register name: [values]} (``plan["feed.filters"]``),
    and `writes`, the register writes in the order they are made."""

    def __init__(self):
        super().__init__()
        self.writes = []
        self.symbols = {}     # name -> (locate, slot)

    def add(self, register, value, index=None):
        self.setdefault(register, []).append(value)
        self.writes.append(Write(register, value, index))

    def summary(self):
        counts = {"feed.filters": "feed filters", "book.subscribe": "symbols",
                  "strategy.taker_params": "takers", "strategy.pair_params": "pairs",
                  "risk.limits": "symbol limits"}
        return ", ".join(f"{len(self[r])} {what}" for r, what in counts.items() if r in self)


class _Checker:
    """Collects problems as ``file: field: rule``."""

    def __init__(self, register_map):
        self.map = register_map
        self.problems = []

    def problem(self, source, where, rule):
        self.problems.append(f"{source}: {where}: {rule}")

    def table(self, source, where, value):
        if not isinstance(value, dict):
            self.problem(source, where, "must be a table")
            return {}
        return value

    def array(self, source, where, value, form):
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.problem(source, where, f"must be an array of tables ({form})")
            return []
        return value

    def keys(self, source, where, item, known, required=()):
        for key in sorted(set(item) - set(known)):
            self.problem(source, f"{where}.{key}",
                         f"unknown field (known: {', '.join(sorted(known))})")
        for key in required:
            if key not in item:
                self.problem(source, f"{where}.{key}", "missing")

    def integer(self, source, where, value, low, high):
        if type(value) is not int or not low <= value <= high:
            self.problem(source, where, f"{value!r} is not an integer in {low}..{high}")
            return None
        return value

    def boolean(self, source, where, value):
        if type(value) is not bool:
            self.problem(source, where, f"{value!r} is not true or false")
            return None
        return value

    def decimal(self, source, where, value, *, low, high, places):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            self.problem(source, where, f"{value!r} is not a number")
            return None
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            self.problem(source, where, f"{value!r} is not a number")
            return None
        if not number.is_finite() or number != number.quantize(Decimal(1).scaleb(-places)):
            self.problem(source, where, f"{value!r} has more than {places} decimals")
            return None
        if not low <= number <= high:
            self.problem(source, where, f"{value} is outside {low}..{high}")
            return None
        return number

    def price(self, source, where, value):
        """A limit price: ITCH Price(4), at most OUCH 5.0's $199,999.99."""
        number = self.decimal(source, where, value, low=Decimal("0.0001"),
                              high=Decimal(OUCH_MAX_PRICE) / PRICE_SCALE, places=4)
        return None if number is None else int(number * PRICE_SCALE)

    def width(self, register, field):
        return next(f.width for f in self.map[register].fields if f.name == field)


# Sections ---------------------------------------------------------------------------------------

FILTER_KEYS = {"group", "port", "feed", "line", "enabled"}


def _feed(c, source, section, plan):
    feed = c.table(source, "feed", section)
    c.keys(source, "feed", feed, {"filter"})
    filters = c.array(source, "feed.filter", feed.get("filter", []), "[[feed.filter]]")
    table = c.map["feed.filters"]
    if len(filters) > table.depth:
        c.problem(source, "feed.filter", f"{len(filters)} entries; the build holds {table.depth}")
    feeds, seen, entries = c.map["feed.next_sequence"].depth, {}, []
    for i, item in enumerate(filters):
        where = f"feed.filter[{i}]"
        c.keys(source, where, item, FILTER_KEYS, ("group", "port", "feed", "line"))
        group = item.get("group")
        try:
            address = ipaddress.IPv4Address(group) if isinstance(group, str) else None
        except ValueError:
            address = None
        if "group" in item and address is None:
            c.problem(source, f"{where}.group", f"{group!r} is not an IPv4 address in quotes")
        elif address is not None and address not in MULTICAST:
            c.problem(source, f"{where}.group",
                      f"{address} is not a multicast group (224.0.0.0/4)")
        port = item.get("port")
        if "port" in item and not (type(port) is int and 1 <= port <= 65535):
            c.problem(source, f"{where}.port", f"{port!r} is not a UDP port (1..65535)")
        number = item.get("feed")
        if "feed" in item and not (type(number) is int and 0 <= number < feeds):
            c.problem(source, f"{where}.feed",
                      f"{number!r} is not a feed of this build (0..{feeds - 1})")
        line = item.get("line")
        if "line" in item and line not in ("A", "B"):
            c.problem(source, f"{where}.line", f"{line!r} is not \"A\" or \"B\"")
        enabled = c.boolean(source, f"{where}.enabled", item.get("enabled", True))
        if address is not None and type(port) is int:
            if (address, port) in seen:
                c.problem(source, where, f"{address}:{port} is already mapped by "
                                         f"feed.filter[{seen[address, port]}]")
            seen[address, port] = i
        entries.append({"group": int(address) if address else 0,
                        "port": port if type(port) is int else 0,
                        "feed": number if type(number) is int else 0,
                        "line": 1 if line == "B" else 0, "enable": int(enabled is True)})
    plan["feed.filters"] = entries


def _symbols(c, source, section, plan):
    items = c.array(source, "symbol", section, "[[symbol]]")
    slots, locates = c.map["book.symbols"].value, c.map["book.locates"].value
    if len(items) > slots:
        c.problem(source, "symbol", f"{len(items)} symbols; the build holds {slots}")
    taken = {item["slot"] for item in items if type(item.get("slot")) is int}
    free = (s for s in range(slots) if s not in taken)
    seen_locates = {}
    for i, item in enumerate(items):
        where = f"symbol[{i}]"
        c.keys(source, where, item, {"name", "locate", "slot"}, ("name", "locate"))
        name = item.get("name")
        if "name" in item and not (isinstance(name, str) and SYMBOL_NAME.match(name)):
            c.problem(source, f"{where}.name", f"{name!r} is not a symbol (1 to 8 characters: "
                                               "capitals, digits, space . + / = -)")
            name = None
        locate = item.get("locate")
        if "locate" in item:
            locate = c.integer(source, f"{where}.locate", locate, 1, locates - 1)
        slot = item.get("slot")
        slot = (next(free, None) if slot is None
                else c.integer(source, f"{where}.slot", slot, 0, slots - 1))
        if name in plan.symbols:
            c.problem(source, f"{where}.name", f"{name} is already declared")
        if locate is not None and locate in seen_locates:
            c.problem(source, f"{where}.locate",
                      f"locate {locate} is already {seen_locates[locate]}")
        if slot is not None and slot in {s for _, s in plan.symbols.values()}:
            c.problem(source, f"{where}.slot", f"slot {slot} is already used")
        if None in (name, locate, slot):
            continue
        seen_locates[locate] = name
        plan.symbols[name] = (locate, slot)
        plan.add("book.subscribe", {"write": 1, "locate": locate, "slot": slot, "enable": 1})
        plan.add("order.symbol", {"write": 1, "slot": slot,
                                  "symbol": int.from_bytes(name.ljust(8).encode(), "big")})


def _slot(c, source, where, plan, name):
    if name not in plan.symbols:
        known = ", ".join(sorted(plan.symbols)) or "none"
        c.problem(source, where, f"{name!r} is not a declared [[symbol]] (declared: {known})")
        return None
    return plan.symbols[name][1]


TAKER_KEYS = {"symbol", "buy_at_or_below", "sell_at_or_above", "quantity", "cooldown_cycles",
              "enabled", "trigger"}
#: ``trigger``: "book" decides on the settled book (BookUpdates), "event" on the raw Adds
#: before the book (see `tickwire.hdl.strategy.taker.ThresholdTaker`).
TAKER_TRIGGERS = {"book": "TAKER", "event": "TAKER_EVENT"}
PAIR_KEYS = {"leg_a", "leg_b", "beta", "offset", "entry", "exit", "quantity", "max_position",
             "enabled"}


def _strategy(c, source, section, plan):
    strategy = c.table(source, "strategy", section)
    c.keys(source, "strategy", strategy, {"taker", "pair"})
    routed = {}
    for i, item in enumerate(c.array(source, "strategy.taker", strategy.get("taker", []),
                                     "[[strategy.taker]]")):
        where = f"strategy.taker[{i}]"
        c.keys(source, where, item, TAKER_KEYS, ("symbol", "quantity"))
        if "buy_at_or_below" not in item and "sell_at_or_above" not in item:
            c.problem(source, where, "needs buy_at_or_below, sell_at_or_above or both")
        slot = _slot(c, source, f"{where}.symbol", plan, item.get("symbol"))
        buy = (c.price(source, f"{where}.buy_at_or_below", item["buy_at_or_below"])
               if "buy_at_or_below" in item else 0)
        sell = (c.price(source, f"{where}.sell_at_or_above", item["sell_at_or_above"])
                if "sell_at_or_above" in item else PRICE_MAX)
        if buy and sell is not None and "sell_at_or_above" in item and buy >= sell:
            c.problem(source, where, "buy_at_or_below must be below sell_at_or_above (the "
                                     "taker would buy and sell at the same prices)")
        quantity = c.integer(source, f"{where}.quantity", item.get("quantity"), 1,
                             OUCH_MAX_QUANTITY) if "quantity" in item else None
        cooldown = c.integer(source, f"{where}.cooldown_cycles",
                             item.get("cooldown_cycles", 0), 0, (1 << 32) - 1)
        enabled = c.boolean(source, f"{where}.enabled", item.get("enabled", True))
        mode = TAKER_TRIGGERS.get(item.get("trigger", "book"))
        if mode is None:
            c.problem(source, f"{where}.trigger", f"{item['trigger']!r} is not one of "
                                                  f"{', '.join(sorted(TAKER_TRIGGERS))}")
        if slot is not None and slot in routed:
            c.problem(source, where, f"{item['symbol']} already runs {routed[slot]}")
        if None in (slot, buy, sell, quantity, cooldown, enabled, mode):
            continue
        routed[slot] = f"strategy.taker[{i}]"
        plan.add("strategy.taker_params", {"write": 1, "index": slot, "enable": int(enabled),
                                           "buy_price": buy, "sell_price": sell,
                                           "quantity": quantity, "cooldown": cooldown})
        plan.add("strategy.selection", {"write": 1, "index": slot, "mode": mode})
    pairs = c.array(source, "strategy.pair", strategy.get("pair", []), "[[strategy.pair]]")
    capacity = 1 << c.width("strategy.pair_params", "index")
    if len(pairs) > capacity:
        c.problem(source, "strategy.pair", f"{len(pairs)} pairs; the build holds {capacity}")
    for k, item in enumerate(pairs):
        where = f"strategy.pair[{k}]"
        c.keys(source, where, item, PAIR_KEYS, sorted(PAIR_KEYS - {"offset", "enabled"}))
        legs = [_slot(c, source, f"{where}.{leg}", plan, item.get(leg))
                for leg in ("leg_a", "leg_b") if leg in item]
        if len(legs) == 2 and legs[0] is not None and legs[0] == legs[1]:
            c.problem(source, where, "leg_a and leg_b are the same symbol")
        for leg, slot in zip(("leg_a", "leg_b"), legs, strict=False):
            if slot is not None and slot in routed:
                c.problem(source, f"{where}.{leg}", f"{item[leg]} already runs {routed[slot]}")
        beta = (c.decimal(source, f"{where}.beta", item["beta"], low=Decimal(0),
                          high=Decimal(65535), places=6) if "beta" in item else None)
        offset = c.decimal(source, f"{where}.offset", item.get("offset", 0),
                           low=Decimal(-PRICE_MAX) / PRICE_SCALE,
                           high=Decimal(PRICE_MAX) / PRICE_SCALE, places=4)
        entry, exit_ = (c.decimal(source, f"{where}.{key}", item[key], low=Decimal(0),
                                  high=Decimal(PRICE_MAX) / PRICE_SCALE, places=4)
                        if key in item else None for key in ("entry", "exit"))
        if entry is not None and exit_ is not None and exit_ >= entry:
            c.problem(source, where, "exit must be below entry (the band it leaves to enter "
                                     "must be wider than the one it comes back into)")
        quantity = (c.integer(source, f"{where}.quantity", item["quantity"], 1,
                              OUCH_MAX_QUANTITY) if "quantity" in item else None)
        limit = (1 << c.width("strategy.pair_params", "max_position")) - 1
        position = (c.integer(source, f"{where}.max_position", item["max_position"], 1, limit)
                    if "max_position" in item else None)
        enabled = c.boolean(source, f"{where}.enabled", item.get("enabled", True))
        if len(legs) != 2 or None in (*legs, beta, offset, entry, exit_, quantity, position,
                                      enabled):
            continue

        def spread(dollars):    # doubled Price(4) with 16 fractional bits
            return int(dollars * PRICE_SCALE * 2 * SPREAD_FRACTION)

        for leg, slot in enumerate(legs):
            routed[slot] = where
            plan.add("strategy.selection", {"write": 1, "index": slot, "mode": "PAIRS",
                                            "pair": k, "leg": leg})
        plan.add("strategy.pair_params", {
            "write": 1, "index": k, "enable": int(enabled), "slot_a": legs[0], "slot_b": legs[1],
            "beta": int(beta * SPREAD_FRACTION), "offset": spread(offset) % (1 << 64),
            "entry": spread(entry), "exit": spread(exit_), "quantity": quantity,
            "max_position": position})


LIMIT_KEYS = {"enabled", "max_quantity", "max_notional", "collar_bps", "position_limit"}


def _risk(c, source, section, plan):
    risk = c.table(source, "risk", section)
    c.keys(source, "risk", risk, {"slot_throttle", "global_throttle", "auto_kill", "default",
                                  "symbol"})
    for name in ("slot_throttle", "global_throttle"):
        if name not in risk:
            continue
        where = f"risk.{name}"
        item = c.table(source, where, risk[name])
        c.keys(source, where, item, {"interval_cycles", "burst"}, ("interval_cycles", "burst"))
        interval = c.integer(source, f"{where}.interval_cycles", item.get("interval_cycles"), 1,
                             (1 << c.width(f"risk.{name}", "interval")) - 1)
        burst = c.integer(source, f"{where}.burst", item.get("burst"), 1,
                          (1 << c.width(f"risk.{name}", "burst")) - 1)
        if None not in (interval, burst):
            plan.add(f"risk.{name}", {"interval": interval, "burst": burst})
    if "auto_kill" in risk:
        item = c.table(source, "risk.auto_kill", risk["auto_kill"])
        c.keys(source, "risk.auto_kill", item, {"rejects", "window_cycles"},
               ("rejects", "window_cycles"))
        rejects = c.integer(source, "risk.auto_kill.rejects", item.get("rejects"), 1,
                            (1 << c.width("risk.auto_kill", "rejects")) - 1)
        window = c.integer(source, "risk.auto_kill.window_cycles", item.get("window_cycles"), 1,
                           (1 << c.width("risk.auto_kill", "window")) - 1)
        if None not in (rejects, window):
            plan.add("risk.auto_kill", {"rejects": rejects, "window": window})
    default = c.table(source, "risk.default", risk.get("default", {}))
    overrides = c.table(source, "risk.symbol", risk.get("symbol", {}))
    for name in sorted(set(overrides) - set(plan.symbols)):
        _slot(c, source, f"risk.symbol.{name}", plan, name)
    position_bits = c.width("risk.limits", "entry.position_limit")
    for name, (_, slot) in plan.symbols.items():
        values = dict(default)
        values.update(c.table(source, f"risk.symbol.{name}", overrides.get(name, {})))
        where = f"risk.symbol.{name}" if name in overrides else "risk.default"
        c.keys(source, where, values, LIMIT_KEYS,
               ("max_quantity", "max_notional", "collar_bps", "position_limit"))
        if any(k not in values for k in LIMIT_KEYS - {"enabled"}):
            continue
        quantity = c.integer(source, f"{where}.max_quantity", values["max_quantity"], 1,
                             OUCH_MAX_QUANTITY)
        notional = c.decimal(source, f"{where}.max_notional", values["max_notional"],
                             low=Decimal("0.0001"), high=Decimal((1 << 64) - 1) / PRICE_SCALE,
                             places=4)
        collar = c.integer(source, f"{where}.collar_bps", values["collar_bps"], 0, 10_000)
        position = c.integer(source, f"{where}.position_limit", values["position_limit"], 1,
                             (1 << position_bits) - 1)
        enabled = c.boolean(source, f"{where}.enabled", values.get("enabled", True))
        if quantity is not None and position is not None and quantity > position:
            c.problem(source, where, f"max_quantity {quantity} exceeds position_limit "
                                     f"{position}: no order of that size could ever pass")
        if None in (quantity, notional, collar, position, enabled):
            continue
        plan.add("risk.limits", {"write": 1, "index": slot, "entry.enabled": int(enabled),
                                 "entry.max_quantity": quantity,
                                 "entry.max_notional": int(notional * PRICE_SCALE),
                                 "entry.collar_bps": collar, "entry.position_limit": position})


ORDER_KEYS = {"dst_mac", "src_mac", "src_ip", "dst_ip", "src_port", "dst_port", "ttl",
              "display", "capacity", "intermarket_sweep", "cross_type", "clordid_prefix"}


def _order(c, source, section, plan):
    order = c.table(source, "order", section)
    c.keys(source, "order", order, ORDER_KEYS, sorted(ORDER_KEYS))
    value = {}
    for key in ("dst_mac", "src_mac"):
        mac = order.get(key)
        if key in order and not (isinstance(mac, str) and MAC.match(mac)):
            c.problem(source, f"order.{key}", f"{mac!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
        elif key in order:
            value[key] = int(mac.replace(":", ""), 16)
    for key in ("src_ip", "dst_ip"):
        try:
            address = ipaddress.IPv4Address(order[key]) if isinstance(order.get(key), str) else None
        except ValueError:
            address = None
        if key in order and (address is None or address.is_multicast):
            c.problem(source, f"order.{key}", f"{order[key]!r} is not a unicast IPv4 address "
                                              "in quotes")
        elif address is not None:
            value[key] = int(address)
    for key in ("src_port", "dst_port"):
        if key in order and c.integer(source, f"order.{key}", order[key], 1, 65535) is not None:
            value[key] = order[key]
    if "ttl" in order and c.integer(source, "order.ttl", order["ttl"], 1, 255) is not None:
        value["ttl"] = order["ttl"]
    for key, codes in OUCH_CODES.items():
        code = order.get(key)
        if key in order and not (isinstance(code, str) and len(code) == 1 and code in codes):
            c.problem(source, f"order.{key}", f"{code!r} is not one of {', '.join(codes)}")
        elif key in order:
            value[key] = ord(code)
    prefix = order.get("clordid_prefix")
    if "clordid_prefix" in order and not (isinstance(prefix, str) and len(prefix) == 6
                                          and prefix.isascii() and prefix.isprintable()
                                          and " " not in prefix):
        c.problem(source, "order.clordid_prefix", f"{prefix!r} is not 6 printable ASCII "
                                                  "characters without spaces")
    elif "clordid_prefix" in order:
        value["clordid_prefix"] = int.from_bytes(prefix.encode(), "big")
    if set(value) == ORDER_KEYS:
        plan.add("order.template", value)


# Order matters: symbols first (the others refer to them).
VALIDATORS = {"feed": _feed, "symbol": _symbols, "strategy": _strategy, "risk": _risk,
              "order": _order}


def parse_documents(documents, register_map):
    """The `Plan` of a configuration given as [(source name, TOML text)]; `ConfigError` listing
    every problem otherwise."""
    checker, sections, origin = _Checker(register_map), {}, {}
    for source, text in documents:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            checker.problems.append(f"{source}: not valid TOML: {error}")
            continue
        for key, value in document.items():
            if key not in SECTIONS:
                checker.problem(source, key, f"unknown section (known: {', '.join(SECTIONS)})")
            elif key in sections:
                checker.problem(source, key, f"already given in {origin[key]}")
            else:
                sections[key], origin[key] = value, source
    plan = Plan()
    for key, validate in VALIDATORS.items():
        if key in sections:
            validate(checker, origin[key], sections[key], plan)
    if checker.problems:
        raise ConfigError(checker.problems)
    return plan


def parse(text, register_map, source="<config>"):
    """The `Plan` of one configuration file's text."""
    return parse_documents([(source, text)], register_map)


def read(paths, register_map):
    """The `Plan` of the files at `paths` (one path or several)."""
    paths = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    documents, problems = [], []
    for path in paths:
        try:
            documents.append((str(path), path.read_text()))
        except OSError as error:
            problems.append(f"{path}: cannot read: {error.strerror}")
    if problems:
        raise ConfigError(problems)
    return parse_documents(documents, register_map)


async def load(device, paths):
    """Validate the files at `paths` against the device's map, then write them, then read back
    what can be read. Returns the `Plan` written."""
    plan = read(paths, device.map)
    for name in ("feed.filters",):
        if name not in plan:
            continue
        depth = device.register(name).depth
        entries = plan[name] + [{"enable": 0}] * (depth - len(plan[name]))
        for index, value in enumerate(entries):
            await device.write(name, value, index=index)
        back = await device.read_table(name)
        wanted = [dict.fromkeys(back[0], 0) | value for value in entries]
        if back != wanted:
            raise RuntimeError(f"{name} reads back differently from what was written")
    for write in plan.writes:
        await device.write(write.register, write.value, index=write.index)
        register = device.register(write.register)
        if register.kind == "config":
            back = await device.read(write.register, write.index)
            if back != dict.fromkeys(back, 0) | write.value:
                raise RuntimeError(f"{write.register} reads back differently from what was "
                                   "written")
    return plan
