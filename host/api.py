"""The host API that the `tickwire` command line is a thin layer over.

    import asyncio
    from tickwire.host.api import connect

    async def main():
        device = await connect("sim")            # or "pcie:/sys/bus/pci/devices/.../resource0"
        await device.write("feed.filters", {"group": 0xE9360C6F, "port": 26477, "feed": 0,
                                            "line": 0, "enable": 1}, index=0)
        print(await device.read("feed.counters.udp.accepted"))
        for notice in await device.drain("feed.notices"):
            print(notice)

    asyncio.run(main())
"""

from pathlib import Path

from tickwire.hdl.platform.device import device_register_map

from .device import Device
from .transports import SimTransport, open_transport

#: Where the generated register map is committed.
DOCS = Path(__file__).resolve().parent.parent / "docs"
REGISTER_DOCS = ("registers.json", "registers.md")


async def connect(device="sim", *, identity=None, check_identity=True, register_map=None,
                  **sim_parameters):
    """Open a device by its spec (``sim``, ``udp://host:port``, ``pcie:<resource file>``),
    refusing it unless its design identity is `identity` (by default the identity of this
    host's gateware). `check_identity=False` only reads it (for `tickwire identity`).
    `register_map` defaults to the map of this host's gateware; a host without the gateware's
    source can pass ``RegisterMap.from_json(...)`` of the committed ``registers.json``."""
    transport = open_transport(device, **sim_parameters)
    try:
        return await Device.open(transport, register_map or device_register_map(),
                                 identity=identity, check_identity=check_identity)
    except BaseException:
        transport.close()
        raise


def register_map(**parameters):
    """The register map of this host's gateware (with `TickToTrade` build `parameters`)."""
    return device_register_map(**parameters)


def register_documents():
    """{file name: text} of the generated register map."""
    regs = register_map()
    return {"registers.json": regs.to_json(), "registers.md": regs.to_markdown()}


def write_register_documents(directory=DOCS):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in register_documents().items():
        (directory / name).write_text(text)
        written.append(directory / name)
    return written


def stale_register_documents(directory=DOCS):
    """The generated files in `directory` that are missing or differ from the declarations."""
    directory = Path(directory)
    return [name for name, text in register_documents().items()
            if not (directory / name).exists() or (directory / name).read_text() != text]


def filter_entry(entry):
    """A `tickwire.sim.feed_model.FilterEntry` (or any object with its fields) as a register
    value."""
    return {"group": entry.group, "port": entry.port, "feed": entry.feed, "line": entry.line,
            "enable": int(entry.enable)}


async def load_filters(device, entries):
    """Write `entries` to the feed filter table, disabling the remaining entries."""
    depth = device.register("feed.filters").depth
    entries = list(entries)
    if len(entries) > depth:
        raise ValueError(f"{len(entries)} filter entries, the gateware holds {depth}")
    for index in range(depth):
        value = filter_entry(entries[index]) if index < len(entries) else {"enable": 0}
        await device.write("feed.filters", value, index=index)


def simulated_nic(device):
    """The `SimulatedNic` behind a device opened on ``sim`` (to queue frames at MAC rx)."""
    if not isinstance(device.transport, SimTransport):
        raise ValueError(f"{device.transport} is not the simulated NIC")
    return device.transport.nic


async def replay(device, frames, drain_cycles=8):
    """Present `frames` at the simulated NIC's MAC rx and clock until they have gone in."""
    nic = simulated_nic(device)
    for frame in frames:
        nic.send(frame)
    nic.run(drain_cycles)


async def replay_default_scenario(device, messages, seed=2026, loss=(0.02, 0.02)):
    """Load the default scenario's filters through the register bank and replay `messages`
    ITCH messages of it on lines A and B (what `tickwire sim` replays)."""
    from tickwire.sim.scenario import ab_frames, default_filters, order_flow

    simulated_nic(device)
    flow = order_flow(messages, seed=seed)
    frames = ab_frames(b"20261122A1", flow, seed=seed, loss=tuple(loss))
    await load_filters(device, default_filters())
    await replay(device, frames)
    return len(frames)


#: Risk-gate reject reasons that are limit breaches (the others are states: not armed,
#: killed, a symbol disabled or not yet priced); each is a counter ``risk.counters.<reason>``.
RISK_BREACHES = ("quantity", "notional", "collar", "position", "slot_throttle",
                 "global_throttle")


async def samples(device, *, interval=1.0, count=None, between=None):
    """Poll a device: yield ``(status, raised)`` every `interval` seconds, where `raised` lists
    what went wrong since the previous sample (the first sample reports everything already
    wrong): each bit of an ``*.alarms`` register that went from clear to set (the feed's gap
    and integrity alarms, the risk gate's kill, ...: ``feed.alarms.gap``), and each limit the
    risk gate refused an intent for (`RISK_BREACHES`: ``risk.breach.position``). `between`, an
    async callable, runs before each poll after the first (the `watch` command uses it to keep
    the simulated NIC's feed running)."""
    import asyncio

    previous, rejects, taken = {}, {}, 0
    while count is None or taken < count:
        if taken:
            if between is not None:
                await between()
            await asyncio.sleep(interval)
        status = await device.status()
        alarms = {f"{name}.{bit}": value for name, bits in status["status"].items()
                  if name.endswith(".alarms") for bit, value in bits.items()}
        raised = [name for name, value in alarms.items() if value and not previous.get(name)]
        previous = alarms
        counts = {reason: status["counters"].get(f"risk.counters.{reason}", 0)
                  for reason in RISK_BREACHES}
        raised += [f"risk.breach.{reason}" for reason, value in counts.items()
                   if value != rejects.get(reason, 0)]
        rejects = counts
        taken += 1
        yield status, raised


def scenario_feeder(device, messages, seed=2026, chunks=10):
    """For `watch` on the simulated NIC: an async callable that replays the next part of the
    default scenario each time it is called (filters loaded on the first call)."""
    from tickwire.sim.scenario import ab_frames, default_filters, order_flow

    simulated_nic(device)
    frames = ab_frames(b"20261122A1", order_flow(messages, seed=seed), seed=seed,
                       loss=(0.02, 0.02))
    step = max(1, -(-len(frames) // chunks))
    state = {"next": 0}

    async def feed():
        if state["next"] == 0:
            await load_filters(device, default_filters())
        await replay(device, frames[state["next"]:state["next"] + step])
        state["next"] += step

    return feed


# Trading controls -------------------------------------------------------------------------------

async def start_session(device, *, sequence, ack, window, user_ref=1):
    """Hand the order session to the gateware (delegated send): the next TCP sequence number it
    sends with, the acknowledgement number and window to advertise, and the next OUCH
    UserRefNum (1 at the start of a SoupBinTCP session). Call it after the host's own TCP
    connect and SoupBinTCP login, and again after any segment the host sends itself (with
    ``order.hold`` set around it)."""
    await device.write("order.session", {"ack": ack, "window": window})
    await device.write("order.load_sequence", {"value": sequence, "load": 1})
    await device.write("order.load_user_ref", {"value": user_ref, "load": 1})


async def arm(device):
    """Let orders leave: the risk gate passes nothing until it is armed. The device was opened
    only after its design identity matched this host's (`connect`), so a board running another
    build cannot be armed. Refused while the kill switch is set."""
    if await device.read("risk.killed"):
        reason = await device.read("risk.kill_reason")
        raise RuntimeError(f"the kill switch is set (reason {reason}); clear it first "
                           "(tickwire kill --clear)")
    await device.write("risk.armed", 1)


async def disarm(device):
    """Stop passing orders (orders already accepted by the encoder still leave)."""
    await device.write("risk.armed", 0)


async def kill(device):
    """Set the kill switch: the risk gate passes nothing and the order encoder starts no new
    frame and flushes its queue (flushed orders are reported in ``order.log``, not sent)."""
    await device.write("risk.kill", 1)
    await device.write("risk.armed", 0)


async def clear_kill(device, attempts=8):
    """Clear the kill switch (the device stays disarmed until `arm`); returns once the gate
    reports it clear (a few cycles after the strobe)."""
    await device.write("risk.clear_kill", 1)
    for _ in range(attempts):
        if not await device.read("risk.killed"):
            return
    raise RuntimeError("the kill switch did not clear")
