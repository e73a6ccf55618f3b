"""Declarative configuration files (TOML), validated against the build before anything is
written.

Today a file configures the feed handler (``[[feed.filter]]``: which multicast groups and
ports carry which feed on which line); strategy and risk sections join when their gateware
does, through the same steps: parse, check every value against the register map of the build
(sizes, ranges, table depths, enums) and against the section's own rules, collect every error
with the file, the field and the rule, and write only if there is none. After writing, the
tables are read back and compared.

Example (``host/examples/feed.toml``)::

    [[feed.filter]]
    group = "233.54.12.111"   # IPv4 multicast group, 224.0.0.0/4
    port = 26477              # UDP destination port, 1..65535
    feed = 0                  # feed number, 0..feeds-1 of the build
    line = "A"                # "A" or "B"
"""

import ipaddress
import tomllib
from pathlib import Path

FILTER_KEYS = {"group", "port", "feed", "line", "enabled"}
MULTICAST = ipaddress.IPv4Network("224.0.0.0/4")


class ConfigError(ValueError):
    """Every problem found in a configuration file, one per line."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _feeds(register_map):
    """How many feeds the build has: the depth of its per-feed sequence table."""
    return register_map["feed.next_sequence"].depth


def parse(text, register_map, source="<config>"):
    """The register writes a configuration asks for: {"feed.filters": [entry dicts]};
    `ConfigError` listing every problem otherwise."""
    problems = []

    def problem(where, rule):
        problems.append(f"{source}: {where}: {rule}")

    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{source}: not valid TOML: {error}"]) from None
    for key in sorted(set(document) - {"feed"}):
        problem(key, "unknown section (known: feed)")
    feed = document.get("feed", {})
    if not isinstance(feed, dict):
        problem("feed", "must be a table")
        feed = {}
    for key in sorted(set(feed) - {"filter"}):
        problem(f"feed.{key}", "unknown field (known: filter)")
    filters = feed.get("filter", [])
    if not isinstance(filters, list):
        problem("feed.filter", "must be an array of tables ([[feed.filter]])")
        filters = []
    table = register_map["feed.filters"]
    if len(filters) > table.depth:
        problem("feed.filter", f"{len(filters)} entries; the build holds {table.depth}")
    feeds, seen, entries = _feeds(register_map), {}, []
    for i, item in enumerate(filters):
        where = f"feed.filter[{i}]"
        if not isinstance(item, dict):
            problem(where, "must be a table")
            continue
        for key in sorted(set(item) - FILTER_KEYS):
            problem(f"{where}.{key}", f"unknown field (known: {', '.join(sorted(FILTER_KEYS))})")
        for key in ("group", "port", "feed", "line"):
            if key not in item:
                problem(f"{where}.{key}", "missing")
        group = item.get("group")
        try:
            address = ipaddress.IPv4Address(group) if isinstance(group, str) else None
        except ValueError:
            address = None
        if "group" in item and address is None:
            problem(f"{where}.group", f"{group!r} is not an IPv4 address in quotes")
        elif address is not None and address not in MULTICAST:
            problem(f"{where}.group", f"{address} is not a multicast group (224.0.0.0/4)")
        port = item.get("port")
        if "port" in item and not (type(port) is int and 1 <= port <= 65535):
            problem(f"{where}.port", f"{port!r} is not a UDP port (1..65535)")
        number = item.get("feed")
        if "feed" in item and not (type(number) is int and 0 <= number < feeds):
            problem(f"{where}.feed", f"{number!r} is not a feed of this build (0..{feeds - 1})")
        line = item.get("line")
        if "line" in item and line not in ("A", "B"):
            problem(f"{where}.line", f"{line!r} is not \"A\" or \"B\"")
        enabled = item.get("enabled", True)
        if type(enabled) is not bool:
            problem(f"{where}.enabled", f"{enabled!r} is not true or false")
        if address is not None and type(port) is int:
            if (address, port) in seen:
                problem(where, f"{address}:{port} is already mapped by "
                               f"feed.filter[{seen[address, port]}]")
            seen[address, port] = i
        entries.append({"group": int(address) if address else 0,
                        "port": port if type(port) is int else 0,
                        "feed": number if type(number) is int else 0,
                        "line": 1 if line == "B" else 0, "enable": int(enabled is True)})
    if problems:
        raise ConfigError(problems)
    return {"feed.filters": entries}


def read(path, register_map):
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None
    return parse(text, register_map, str(path))


async def load(device, path):
    """Validate the file at `path` against the device's map, then write it, then read it back.
    Returns the writes made: {register name: values}."""
    writes = read(path, device.map)
    for name, entries in writes.items():
        depth = device.register(name).depth
        padded = entries + [{"enable": 0}] * (depth - len(entries))
        for index, value in enumerate(padded):
            await device.write(name, value, index=index)
        back = await device.read_table(name)
        wanted = [dict.fromkeys(back[0], 0) | value for value in padded]
        if back != wanted:
            raise RuntimeError(f"{name} reads back differently from what was written")
    return writes
