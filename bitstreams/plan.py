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

from tickwire.hdl.book.records import BookParameters

#: Parameters a board build takes (``--param key=value``): the order book's, the feed
#: handler's, the PLL's core clock divider (VCO 625 MHz / ``core_div``).
BOOK_KEYS = tuple(BookParameters._fields)
FEED_KEYS = ("feeds", "filter_entries", "notice_depth")
CLOCK_KEYS = ("core_div",)
PARAMETER_KEYS = BOOK_KEYS + FEED_KEYS + CLOCK_KEYS


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
        try:
            out[key] = int(text.strip(), 0)
        except ValueError:
            raise ParameterError(f"{key}: {text!r} is not an integer") from None
    return out


def top_parameters(parameters):
    """The `TickToTrade` keyword arguments of a board's parameters (validated)."""
    unknown = set(parameters) - set(PARAMETER_KEYS)
    if unknown:
        raise ParameterError(f"unknown parameters {sorted(unknown)}")
    book = BookParameters(**{k: parameters[k] for k in BOOK_KEYS if k in parameters})
    try:
        book.check()
    except ValueError as error:
        raise ParameterError(f"book: {error}") from None
    feed = {k: parameters[k] for k in FEED_KEYS if k in parameters}
    return {"book": book, "feed": feed}


def plan_identity(prepare):
    """Step 1: the identity of the plan `prepare(identity)` returns, from its identity-0 plan."""
    return int.from_bytes(prepare(0).digest(8), "big")


def identified_plan(prepare):
    """(identity, the plan carrying it): both steps."""
    identity = plan_identity(prepare)
    return identity, prepare(identity)


def register_map_json(parameters):
    """The register map (JSON) of a board build with these parameters, for the host."""
    from tickwire.hdl.platform.device import describe_only
    from tickwire.hdl.top import TickToTrade

    return describe_only(TickToTrade(**top_parameters(parameters))).register_map.to_json()
