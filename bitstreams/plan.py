"""Board build parameters and the build plan's identity.

A board build is an Amaranth build plan (`amaranth.build.BuildPlan`: the RTLIL, the
constraints and the tool script) of a board's top level. Its design identity, the value the
register bank serves at ``id.identity``, names the plan, but the identity is part of the plan
(a constant in the RTLIL), so it is found in two steps:

1. the plan is prepared with identity 0, and its digest (Amaranth's `BuildPlan.digest`,
   BLAKE2b over every file's name and content and the script name, 8 bytes, big-endian) is
   the identity;
2. the plan is prepared again with that identity: this is the plan that is built.

The two plans differ only in the identity constant, so anyone holding the sources can check a
bitstream's identity by repeating step 1 (`plan_identity`). Sources are converted without
``src`` attributes, so the plan (and the identity) does not depend on where the checkout is.
"""

import hashlib
import ipaddress
import os
import secrets
from pathlib import Path

from tickwire.hdl.book.records import BookParameters
from tickwire.hdl.net.control import ControlDefaults

#: Parameters a board build takes (``--param key=value``): the order book's, the feed
#: handler's, the UDP control channel's reset values (``mac`` as 02:74:77:00:00:01, ``ip`` and
#: ``host_ip`` dotted, ``port``), the core clock divider of the board's PLL.
BOOK_KEYS = tuple(BookParameters._fields)
FEED_KEYS = ("feeds", "filter_entries", "notice_depth")
CONTROL_KEYS = ("mac", "ip", "port", "host_ip")
CLOCK_KEYS = ("core_div",)
PARAMETER_KEYS = BOOK_KEYS + FEED_KEYS + CONTROL_KEYS + CLOCK_KEYS
_DEFAULT_CONTROL = ControlDefaults()
CONTROL_PARAMETERS = {
    "mac": ":".join(f"{_DEFAULT_CONTROL.mac >> s & 255:02x}" for s in range(40, -8, -8)),
    "ip": str(ipaddress.IPv4Address(_DEFAULT_CONTROL.ip)), "port": _DEFAULT_CONTROL.port,
    "host_ip": str(ipaddress.IPv4Address(_DEFAULT_CONTROL.host_ip)),
}
TOKEN_VARIABLE = "TICKWIRE_CONTROL_TOKEN"


class ParameterError(ValueError):
    pass


def parse_overrides(pairs):
    """``["symbols=8", "core_div=12"]`` -> {"symbols": 8, "core_div": 12}; every value an
    integer (decimal or 0x hex); unknown keys refused, naming the known ones."""
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep:
            raise ParameterError(f"{pair!r}: expected key=value")
        if key not in PARAMETER_KEYS:
            raise ParameterError(f"unknown parameter {key!r}; known: {', '.join(PARAMETER_KEYS)}")
        text = text.strip()
        if key in ("mac", "ip", "host_ip"):
            out[key] = text
            _address(key, text)
            continue
        try:
            out[key] = int(text, 0)
        except ValueError:
            raise ParameterError(f"{key}: {text!r} is not an integer") from None
    return out


def _address(key, text):
    """The integer of a ``mac`` (six hex bytes with colons) or an IPv4 address."""
    if key == "mac":
        parts = text.split(":")
        if len(parts) != 6 or not all(len(p) == 2 for p in parts):
            raise ParameterError(f"mac: {text!r} is not like 02:74:77:00:00:01")
        try:
            return int("".join(parts), 16)
        except ValueError:
            raise ParameterError(f"mac: {text!r} is not hexadecimal") from None
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        raise ParameterError(f"{key}: {text!r} is not an IPv4 address") from None


def control_token(folder):
    """The build's 16-byte control token: ``TICKWIRE_CONTROL_TOKEN`` (32 hex digits) if set,
    else the one kept in `folder`/control_token (made at random on first use, mode 0600), so
    that rebuilding the same plan finds it cached. It is in the bitstream: the host needs it
    to talk to the board (``TICKWIRE_CONTROL_TOKEN``)."""
    text = os.environ.get(TOKEN_VARIABLE)
    if text is None:
        path = Path(folder) / "control_token"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_hex(16) + "\n")
        text = path.read_text()
    try:
        token = bytes.fromhex(text.strip())
    except ValueError:
        token = b""
    if len(token) != 16:
        raise ParameterError(f"{TOKEN_VARIABLE} must be 32 hex digits (16 bytes)")
    return token


def token_digest(token):
    """What the manifest says of the token: enough to tell two apart, not to recover one."""
    return hashlib.sha256(b"tickwire control token\0" + token).hexdigest()[:16]


def top_parameters(parameters, token=bytes(16)):
    """The `TickToTrade` keyword arguments of a board's parameters (validated)."""
    unknown = set(parameters) - set(PARAMETER_KEYS)
    if unknown:
        raise ParameterError(f"unknown parameters {sorted(unknown)}")
    control = {**CONTROL_PARAMETERS, **{k: parameters[k] for k in CONTROL_KEYS
                                        if k in parameters}}
    port = control["port"]
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ParameterError(f"port: {port!r} is not a UDP port")
    control = ControlDefaults(mac=_address("mac", control["mac"]),
                              ip=_address("ip", control["ip"]), port=port,
                              host_ip=_address("host_ip", control["host_ip"]), token=token)
    book = BookParameters(**{k: parameters[k] for k in BOOK_KEYS if k in parameters})
    try:
        book.check()
    except ValueError as error:
        raise ParameterError(f"book: {error}") from None
    feed = {k: parameters[k] for k in FEED_KEYS if k in parameters}
    return {"book": book, "feed": feed, "control": control}


def plan_identity(prepare):
    """Step 1: the identity of the plan `prepare(identity)` returns, from its identity-0 plan."""
    return int.from_bytes(prepare(0).digest(8), "big")


def identified_plan(prepare):
    """(identity, the plan carrying it): both steps."""
    identity = plan_identity(prepare)
    return identity, prepare(identity)


def register_map_json(parameters):
    """The register map (JSON) of a board build with these parameters, for the host."""
    return board_register_map(parameters).to_json()


def board_register_map(parameters, phy="rgmii"):
    """The register map of a board build: the core's, then (RGMII) the MAC's counters and the
    MDIO master's registers."""
    from tickwire.hdl.platform.device import describe_only

    from .board import BoardCore

    return describe_only(BoardCore(top=top_parameters(parameters), phy=phy)).t2t.register_map
