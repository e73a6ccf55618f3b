"""Running the order encoder in Amaranth's simulator (unit tier), and host-side encodings of
its configuration (template, session, symbol strobes) shared with the cocotb bench."""

import dataclasses

from amaranth.hdl import Value

from tickwire.hdl.net.mac import MacBeat
from tickwire.hdl.order.encoder import (
    HistogramBins,
    LoadValue,
    OrderEncoder,
    OrderLogEntry,
    OrderTemplate,
    SessionWindow,
    SymbolWrite,
)
from tickwire.hdl.strategy.records import OrderIntent

from .amaranth_sim import simulate
from .records import pack, unpack


def template_value(template):
    """An `OrderTemplate` register value from a `tickwire.sim.ouch.Template`."""
    t = template
    return pack(OrderTemplate, dict(
        dst_mac=t.dst_mac, src_mac=t.src_mac, src_ip=t.src_ip, dst_ip=t.dst_ip,
        src_port=t.src_port, dst_port=t.dst_port, ttl=t.ttl, display=t.display[0],
        capacity=t.capacity[0], intermarket_sweep=t.intermarket_sweep[0],
        cross_type=t.cross_type[0], clordid_prefix=int.from_bytes(t.clordid_prefix, "big")))


def session_value(template):
    return pack(SessionWindow, dict(ack=template.ack, window=template.window))


def symbol_value(slot, symbol):
    return pack(SymbolWrite, dict(slot=slot, write=1,
                                  symbol=int.from_bytes(symbol.ljust(8, b" "), "big")))


def load_value(value):
    return pack(LoadValue, dict(value=value, load=1))


def histogram_value(base, shift):
    return pack(HistogramBins, dict(base=base, shift=shift))


@dataclasses.dataclass
class Sent:
    frame: bytes
    presented: int     # cycle the first beat was first valid
    taken: int         # cycle the first beat was taken
    last: int          # cycle the last beat was taken
    gaps: int          # cycles inside the frame with tx.valid low (must be 0)


@dataclasses.dataclass
class EncoderRun:
    frames: list
    log: list          # OrderLogEntry dicts, in FIFO order
    accepted: list     # cycle each intent was taken at ``orders``
    counters: dict
    latency: dict
    histogram: list
    next_sequence: int
    next_user_ref: int
    cycles: int


def run_encoder(intents, *, template, symbols, dut=None, sequence=0, user_ref=1,
                arrivals=None, ready=None, kill=None, hold=None, settle=None, drain=40,
                bins=(0, 0), updates=(), strobes=None, log_ready=None, load_template=True,
                max_cycles=20000, vcd=None):
    """Present `intents` (dicts of OrderIntent fields) at ``orders`` of an `OrderEncoder`.

    Intent k is offered from cycle ``arrivals[k]`` (default: as soon as possible) and held
    until taken. ``ready(cycle)``, ``kill(cycle)`` and ``hold(cycle)`` give ``tx.ready``,
    ``kill`` and ``hold`` per cycle. Configuration (template, session, symbols, loads) is
    written before cycle 0, then `settle` cycles pass. `updates` are (cycle, template) pairs:
    a new template and session written at that cycle; `strobes` maps a cycle to
    {port: value} set for that cycle only; ``log_ready(cycle)`` drains the log (default
    always). With `load_template` false no template is written before cycle 0. Cycle numbers
    are ``now``."""
    dut = dut or OrderEncoder(slots=max(symbols) + 1 if symbols else 16, log_depth=64)
    arrivals = arrivals or [0] * len(intents)
    ready = ready or (lambda cycle: True)
    kill = kill or (lambda cycle: False)
    hold = hold or (lambda cycle: False)
    updates = dict(updates)
    strobes = strobes or {}
    log_ready = log_ready or (lambda cycle: True)
    settle = dut.SETTLE_CYCLES + 4 if settle is None else settle
    out = {}

    async def testbench(ctx):
        if load_template:
            ctx.set(dut.template.as_value(), template_value(template))
            ctx.set(dut.session.as_value(), session_value(template))
        ctx.set(dut.histogram_bins.as_value(), histogram_value(*bins))
        ctx.set(dut.log.ready, 1)
        for slot, symbol in symbols.items():
            ctx.set(dut.symbol.as_value(), symbol_value(slot, symbol))
            await ctx.tick()
        ctx.set(dut.symbol.as_value(), 0)
        ctx.set(dut.load_sequence.as_value(), load_value(sequence))
        ctx.set(dut.load_user_ref.as_value(), load_value(user_ref))
        await ctx.tick()
        ctx.set(dut.load_sequence.as_value(), 0)
        ctx.set(dut.load_user_ref.as_value(), 0)
        for _ in range(settle):
            await ctx.tick()

        frames, log, accepted = [], [], []
        beats, presented, taken_first, gaps = [], None, None, 0
        pending = 0
        cycle = 0
        idle_after = None
        while True:
            if cycle in updates:
                ctx.set(dut.template.as_value(), template_value(updates[cycle]))
                ctx.set(dut.session.as_value(), session_value(updates[cycle]))
            offering = pending < len(intents) and arrivals[pending] <= cycle
            ctx.set(dut.orders.valid, offering)
            if offering:
                ctx.set(dut.orders.payload.as_value(), pack(OrderIntent, intents[pending]))
            ctx.set(dut.tx.ready, ready(cycle))
            ctx.set(dut.kill, kill(cycle))
            ctx.set(dut.hold, hold(cycle))
            ctx.set(dut.now, cycle)
            ctx.set(dut.log.ready, log_ready(cycle))
            for name in strobes.get(cycle - 1, {}):
                ctx.set(Value.cast(getattr(dut, name)), 0)
            for name, value in strobes.get(cycle, {}).items():
                ctx.set(Value.cast(getattr(dut, name)), value)
            if offering and ctx.get(dut.orders.ready):
                accepted.append(cycle)
                pending += 1
            valid, is_ready = ctx.get(dut.tx.valid), ctx.get(dut.tx.ready)
            beat = unpack_beat(ctx.get(dut.tx.payload.as_value()))
            if valid and presented is None:
                assert beat["first"], f"cycle {cycle}: a frame starts without first"
                presented = cycle
            if presented is not None and not valid:
                gaps += 1
            if valid and is_ready:
                assert beat["keep"] == 0xFF and not beat["bad"]
                if not beats:
                    taken_first = cycle
                beats.append(beat["data"].to_bytes(8, "little"))
                if beat["last"]:
                    frames.append(Sent(b"".join(beats), presented, taken_first, cycle, gaps))
                    beats, presented, gaps = [], None, 0
            log_valid = ctx.get(dut.log.valid)
            if log_valid and log_ready(cycle):
                log.append(unpack(OrderLogEntry, ctx.get(dut.log.payload.as_value())))
            await ctx.tick()
            cycle += 1
            queued = ctx.get(dut.activity.queued)
            quiet = (pending == len(intents) and not valid and not beats and not queued
                     and not log_valid
                     and cycle > max(list(strobes) + list(updates), default=0))
            if cycle > max_cycles:
                raise TimeoutError(f"the encoder is still busy after {max_cycles} cycles")
            if quiet:
                idle_after = cycle if idle_after is None else idle_after
                if cycle - idle_after >= drain:
                    break
            else:
                idle_after = None
        assert not beats, "a frame was left unfinished"
        out.update(
            frames=frames, log=log, accepted=accepted,
            counters=unpack(dut.counters.shape(), ctx.get(dut.counters.as_value())),
            latency=unpack(dut.latency.shape(), ctx.get(dut.latency.as_value())),
            histogram=list(unpack(dut.histogram.shape(),
                                  ctx.get(dut.histogram.as_value())).values()),
            next_sequence=ctx.get(dut.next_sequence), next_user_ref=ctx.get(dut.next_user_ref),
            cycles=cycle)

    simulate(dut, testbench, vcd)
    return EncoderRun(**out)


def unpack_beat(value):
    return unpack(MacBeat, value)
