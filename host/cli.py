"""The `tickwire` command line."""

import json
import sys

import click
from rich.console import Console
from rich.table import Table


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """tickwire: FPGA tick-to-trade gateware (Amaranth) and its host tools."""


@main.command()
@click.option("--messages", type=click.IntRange(min=100), default=20_000, show_default=True,
              help="ITCH messages in the generated session.")
@click.option("--seed", default=2026, show_default=True, help="Scenario random seed.")
@click.option("--config", "configs", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Strategy, risk and order-session TOML (repeatable; validated as `tickwire "
                   "load` does). Default: takers around each symbol's first price, real "
                   "limits.")
@click.option("--loss", nargs=2, type=float, default=(0.02, 0.02), show_default=True,
              help="Packet loss probability on feed lines A and B.")
@click.option("--chunk", type=click.IntRange(min=1), default=250, show_default=True,
              help="Scenario messages per round of the loop (positions marked, session "
                   "kept, drop copy sent); orders reach the exchange after their packet.")
@click.option("--out", type=click.Path(file_okay=False), default="build/sim-report",
              show_default=True, help="Report folder: summary.json, feed.pcap, orders.pcap, "
                                      "PNG plots.")
@click.option("--no-drop-copy", is_flag=True,
              help="Leave out the FIX 4.4 drop copy (QuickFIX, both ends) and its "
                   "reconciliation with the order log and the OUCH replies.")
@click.option("--no-recovery", is_flag=True,
              help="Leave the feed handler's gap recovery off: a message lost on both lines "
                   "is skipped (GAP notice) instead of re-requested from the exchange.")
@click.option("--vcd", metavar="FIRST:CYCLES",
              help="Dump every signal of the device for CYCLES simulated cycles from cycle "
                   "FIRST (the pcap files' time base) to window.vcd in the report folder "
                   "(a traced build of the model, cached apart).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False),
              help="Also write the summary as JSON to this file.")
def sim(messages, seed, configs, loss, chunk, out, no_drop_copy, no_recovery, vcd, json_out):
    """Trade the bundled default scenario end to end in simulation.

    The simulated exchange publishes the scenario's ITCH flow as MoldUDP64 on lines A and B;
    the tick-to-trade gateware, Verilated, builds its books, runs the strategies, checks risk
    and builds the order frames itself on the host's TCP session (delegated send); the host
    checks every frame, carries it on its SoupBinTCP connection to the exchange, reads the
    OUCH replies and keeps positions and P&L; the exchange's executions go back into the feed.
    """
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from tickwire.host.config import ConfigError
    from tickwire.host.order_session import SessionError
    from tickwire.sim.closed_loop import LoopError, run_closed_loop, write_report

    console = Console(stderr=True)
    if not all(0.0 <= p < 1.0 for p in loss):
        raise click.BadParameter("probabilities in [0, 1)", param_hint="--loss")
    window = None
    if vcd is not None:
        try:
            first, cycles = (int(part) for part in vcd.split(":"))
        except ValueError:
            raise click.BadParameter("FIRST:CYCLES, two integers", param_hint="--vcd") from None
        if first < 0 or cycles <= 0:
            raise click.BadParameter("FIRST >= 0 and CYCLES > 0", param_hint="--vcd")
        window = (Path(out) / "window.vcd", first, cycles)
    documents = [(path, Path(path).read_text()) for path in configs] or None
    with console.status("building and loading the Verilated device (cached)"):
        from tickwire.sim.closed_loop import SIM_PARAMETERS
        from tickwire.sim.t2t_run import VerilatedTop
        top = VerilatedTop(trace=window is not None, **SIM_PARAMETERS)
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("market messages", total=messages)
        try:
            result = run_closed_loop(messages, seed, configs=documents, chunk=chunk, loss=loss,
                                     top=top, drop_copy=not no_drop_copy,
                                     recover=not no_recovery, vcd=window,
                                     progress=lambda done: progress.update(task, completed=done))
        except ConfigError as error:
            progress.stop()
            click.echo(str(error), err=True)
            sys.exit(1)
        except (LoopError, SessionError) as error:
            progress.stop()
            click.echo(f"the closed loop stopped: {error}", err=True)
            sys.exit(1)
    with console.status(f"writing the report to {out}"):
        written = write_report(result, out)
    summary = result.summary()
    _print_sim(summary, Console())
    if window is not None:
        written.append(window[0])
    Console().print(f"report: {', '.join(str(p) for p in written)}")
    if json_out:
        with open(json_out, "w") as file:
            json.dump(summary, file, indent=2)
    if not summary["acknowledged"]["ok"]:
        console.print("[red]orders without a matching OUCH answer: "
                      + "; ".join(summary["acknowledged"]["problems"]))
        sys.exit(1)
    if not no_recovery and (summary["gap_messages"]
                            or summary["books_match_exchange"] is False):
        console.print(f"[red]the gateware's feed or books differ from the exchange's: "
                      f"{summary['gap_messages']} messages never delivered; "
                      + "; ".join(summary["book_mismatches"][0] if summary["book_mismatches"]
                                  else []))
        sys.exit(1)
    if summary["reconciliation"] is not None and not summary["reconciliation"]["ok"]:
        console.print("[red]reconciliation alarms: "
                      + "; ".join(summary["reconciliation"]["first_alarms"]))
        sys.exit(1)


def _print_sim(summary, console):
    table = Table(title="tickwire sim: the closed loop (exchange, Verilated TickToTrade, host)",
                  show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [("scenario messages", summary["scenario_messages"]),
            ("feed messages (with our executions)", summary["feed_messages"]),
            ("MoldUDP64 packets / frames (lines A and B)",
             f"{summary['packets']:,} / {summary['frames']:,}"),
            ("gaps recovered (GAP notices; re-requests, messages)",
             f"{summary['recovery']['gap_notices']:,}; {summary['recovery']['rerequests']:,}, "
             f"{summary['recovery']['messages']:,}"),
            ("messages never delivered", summary["gap_messages"]),
            ("books equal the exchange's at the end",
             {True: "yes", False: "NO"}.get(summary["books_match_exchange"],
                                            f"not compared: order table full "
                                            f"({summary['book_table_full']:,} adds refused)")),
            ("strategy intents", summary["intents"]),
            ("orders sent (delegated send)", summary["orders"]),
            ("OUCH accepted / rejected", f"{summary['accepted']:,} / {summary['rejected']:,}"),
            ("fills (shares)", f"{summary['fills']:,} ({summary['filled_shares']:,})"),
            ("OUCH canceled (IOC rest, end of day)", summary["canceled"]),
            ("risk gate rejects", ", ".join(f"{k} {v:,}" for k, v in
                                            summary["risk_rejects"].items()) or "none"),
            ("exchange rejects (OUCH reason)", ", ".join(
                f"{k} {v:,}" for k, v in summary["exchange_rejects"].items()) or "none")]
    cycles, ns = summary["latency_cycles"], summary["latency_ns"]
    if cycles:
        rows.append(("tick to trade, cycles (min/med/p99/max)",
                     f"{cycles['min']} / {cycles['median']} / {cycles['p99']} / {cycles['max']}"))
        rows.append((f"tick to trade, ns at {summary['clock_mhz']} MHz",
                     f"{ns['min']} / {ns['median']} / {ns['p99']} / {ns['max']}"))
    lag = summary["exchange_lag_messages"]
    if lag:
        rows.append(("lag to the exchange (messages after the trigger)",
                     f"median {lag['median']}, max {lag['max']}"))
    pnl = summary["pnl"]
    rows += [("P&L total (realised + unrealised at mid)",
              f"${float(pnl['total']):,.2f} ({float(pnl['realised']):,.2f} + "
              f"{float(pnl['unrealised']):,.2f})"),
             ("every order answered (Accepted/Rejected)",
              "yes" if summary["acknowledged"]["ok"] else "NO")]
    recon = summary["reconciliation"]
    if recon is not None:
        rows += [("drop copy reports (FIX 4.4)", recon["drop_copy_reports"]),
                 ("reconciliation: log, OUCH, drop copy",
                  f"{recon['matched']:,} of {recon['orders']:,} orders clean" if recon["ok"]
                  else ", ".join(f"{k} {v}" for k, v in recon["alarms"].items())),
                 ("P&L from the drop copy alone", f"${float(recon['drop_copy_pnl']):,.2f}")]
    rows.append(("simulation speed (scenario messages/s)", summary["messages_per_s"]))
    for what, value in rows:
        table.add_row(what, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    positions = Table(title="positions and P&L by symbol ($)")
    for column in ("symbol", "position", "bought", "sold", "realised", "unrealised", "total"):
        positions.add_column(column, justify="left" if column == "symbol" else "right")
    for row in pnl["by_symbol"]:
        positions.add_row(row["symbol"], f"{row['position']:,}", f"{row['bought']:,}",
                          f"{row['sold']:,}", f"{float(row['realised']):,.2f}",
                          f"{float(row['unrealised']):,.2f}", f"{float(row['total']):,.2f}")
    console.print(positions)


@main.command()
def version():
    """Print the tickwire version."""
    from importlib.metadata import version as package_version
    click.echo(package_version("tickwire"))


# The control plane: the register map and devices (tickwire.host.api) ------------------------

DEVICE_HELP = ("Device: sim (the simulated NIC), udp://<host>:<port> (the board's token in "
               "TICKWIRE_CONTROL_TOKEN), pcie:<sysfs resource file> (or its path).")
IDENTITY_HELP = ("Expected design identity (16 hex digits); default: the identity of the "
                 "gateware this host is built from.")


MANIFEST_HELP = ("A board build's manifest.json (or its folder): use the board's register map "
                 "and refuse a board whose design identity is not the manifest's.")


async def _open(device, identity, manifest):
    """The device, checked against --identity, or against --manifest (a board build's)."""
    from tickwire.host import api

    if manifest is None:
        return await api.connect(device, identity=_identity(identity))
    if identity is not None:
        raise click.BadParameter("give --identity or --manifest, not both",
                                 param_hint="--manifest")
    from tickwire.bitstreams.manifest import connect_with_manifest
    return await connect_with_manifest(device, manifest)


def _identity(text):
    if text is None:
        return None
    try:
        return int(text, 16)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not hexadecimal", param_hint="--identity") from None


def _run(coroutine_function):
    """Run a coroutine; the driver's refusals become one-line errors (exit status 1)."""
    import asyncio

    from tickwire.host.device import DeviceError, RegisterError

    try:
        return asyncio.run(coroutine_function())
    except (RegisterError, DeviceError, ValueError, OSError, ConnectionError) as error:
        from rich.markup import escape

        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {escape(str(error))}",
                                                   highlight=False)
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the map as JSON.")
@click.option("--write", "write_dir", type=click.Path(file_okay=False), default=None,
              is_flag=False, flag_value="", help="Regenerate registers.json and registers.md "
              "(in docs/ of the checkout, or in the directory given).")
@click.option("--check", is_flag=True,
              help="Exit non-zero if the committed docs/registers.* are not current.")
def regs(as_json, write_dir, check):
    """Dump the register map generated from the gateware's register declarations."""
    from tickwire.host import api

    if write_dir is not None:
        for path in api.write_register_documents(write_dir or api.DOCS):
            click.echo(f"wrote {path}")
        return
    if check:
        stale = api.stale_register_documents()
        if stale:
            Console(stderr=True).print(f"[red]not current:[/red] {', '.join(stale)} in "
                                       f"{api.DOCS}; run `tickwire regs --write`")
            sys.exit(1)
        click.echo("register documents are current")
        return
    regs_map = api.register_map()
    if as_json:
        click.echo(regs_map.to_json(), nl=False)
        return
    table = Table(title=f"tickwire register map ({regs_map.size} words of 32 bits)")
    for column in ("address", "name", "kind", "access", "bits", "doc"):
        table.add_column(column, justify="right" if column in ("address", "bits") else "left")
    for r in regs_map:
        span = f"0x{r.address:04x}" + (f"+{r.span}" if r.span > 1 else "")
        table.add_row(span, r.name, r.kind + (f"[{r.depth}]" if r.depth > 1 else ""), r.access,
                      str(r.width), r.doc)
    Console().print(table)


@main.command()
@click.option("--device", default="sim", show_default=True, help=DEVICE_HELP)
@click.option("--identity", help=IDENTITY_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON (for scripts).")
@click.option("--all", "show_all", is_flag=True, help="Show counters that are zero too.")
@click.option("--notices", is_flag=True, help="Also drain and show the notice FIFO.")
@click.option("--replay", type=click.IntRange(min=100), default=None, metavar="N",
              help="sim only: load the default scenario's feed filters through the register "
              "bank and replay N messages of it at MAC rx first.")
@click.option("--seed", default=2026, show_default=True, help="Scenario seed for --replay.")
@click.option("--manifest", type=click.Path(), default=None, help=MANIFEST_HELP)
def status(device, identity, as_json, show_all, notices, replay, seed, manifest):
    """Counters, alarms, status registers and latency statistics of a device, read through
    its register bank."""
    from tickwire.host import api
    from tickwire.host.device import HISTOGRAM_BINS_SUFFIX

    async def work():
        dev = await _open(device, identity, manifest)
        report = {"device": device}
        if replay is not None:
            report["frames_replayed"] = await api.replay_default_scenario(dev, replay, seed)
        report |= await dev.status()
        if notices:
            report["notices"] = await dev.drain("feed.notices")
        return report

    report = _run(work)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    console = Console()
    console.print(f"device {device}, design identity {report['identity']}"
                  + (f", {report['frames_replayed']} frames replayed"
                     if "frames_replayed" in report else ""), highlight=False)
    table = Table(title="status")
    table.add_column("register")
    table.add_column("value", justify="right")
    for name, value in report["status"].items():
        if name.endswith(".alarms"):
            raised = [k for k, v in value.items() if v]
            value = "[red]" + ", ".join(raised) + "[/red]" if raised else "none"
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        table.add_row(name, str(value))
    console.print(table)
    for bins_name, bins in report["histogram_bins"].items():
        console.print(*_latency_tables(bins_name.removesuffix(HISTOGRAM_BINS_SUFFIX), bins,
                                       report))
    counters = Table(title="counters" + ("" if show_all else " (non-zero)"))
    counters.add_column("counter")
    counters.add_column("value", justify="right")
    for name, value in report["counters"].items():
        if value or show_all:
            counters.add_row(name, f"{value:,}")
    console.print(counters)
    if notices:
        table = Table(title=f"notices ({len(report['notices'])} drained)")
        for field in ("kind", "feed", "code", "locate", "timestamp", "sequence", "value"):
            table.add_column(field, justify="right")
        for notice in report["notices"]:
            table.add_row(*_notice_cells(notice))
        console.print(table)


def _latency_tables(block, bins, report):
    """A block's latency statistics and its histogram's non-empty bins (see
    `tickwire.host.device.HISTOGRAM_BINS_SUFFIX`), in cycles."""
    stats = report["status"].get(f"{block}.latency", {})
    count = stats.get("count", 0)
    summary = Table(title=f"{block} latency, trigger at rx to order at tx (cycles)")
    for column in ("orders", "min", "mean", "max"):
        summary.add_column(column, justify="right")
    summary.add_row(f"{count:,}", *(["-"] * 3 if not count else
                                    [str(stats["min"]), f"{stats['sum'] / count:.1f}",
                                     str(stats["max"])]))
    prefix = f"{block}.histogram."
    counts = [v for n, v in report["counters"].items() if n.startswith(prefix)]
    base, width = bins["base"], 1 << bins["shift"]
    histogram = Table(title=f"{block} latency histogram (non-empty bins)")
    histogram.add_column("cycles", justify="right")
    histogram.add_column("orders", justify="right")
    for k, value in enumerate(counts):
        if k == 0:
            span = f"< {base}"
        elif k == len(counts) - 1:
            span = f">= {base + (k - 1) * width}"
        else:
            span = f"{base + (k - 1) * width}..{base + k * width - 1}"
        if value:
            histogram.add_row(span, f"{value:,}")
    return summary, histogram


def _notice_cells(notice):
    """A notice for people: kind by name, a symbol (stock directory, trading action) as text."""
    from tickwire.hdl.feed.events import NoticeKind

    cells = {k: str(v) for k, v in notice.items()}
    try:
        kind = NoticeKind(notice["kind"])
    except ValueError:
        return list(cells.values())
    cells["kind"] = kind.name
    if kind in (NoticeKind.STOCK_DIRECTORY, NoticeKind.TRADING_ACTION):
        cells["value"] = notice["value"].to_bytes(8, "big").decode("ascii", "replace").strip()
    if notice["code"]:
        cells["code"] = chr(notice["code"]) if 32 < notice["code"] < 127 else cells["code"]
    return list(cells.values())


def _value(text):
    """VALUE on the command line: an integer (0x.. allowed), or field=value pairs."""
    def number(item):
        try:
            return int(item, 0)
        except ValueError:
            return item    # an enum member name; the driver checks it
    if len(text) == 1 and "=" not in text[0]:
        try:
            return int(text[0], 0)
        except ValueError:
            raise click.BadParameter(f"{text[0]!r} is not an integer", param_hint="VALUE") from None
    fields = {}
    for item in text:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: give field=value pairs or one integer",
                                     param_hint="VALUE")
        fields[name] = number(value)
    return fields


@main.command()
@click.argument("name")
@click.option("--index", type=int, help="Table entry.")
@click.option("--device", default="sim", show_default=True, help=DEVICE_HELP)
@click.option("--identity", help=IDENTITY_HELP)
@click.option("--manifest", type=click.Path(), default=None, help=MANIFEST_HELP)
def read(name, index, device, identity, manifest):
    """Read a register (or a table entry with --index) by name; prints JSON."""

    async def work():
        dev = await _open(device, identity, manifest)
        register = dev.register(name)
        if register.depth > 1 and index is None:
            return await dev.read_table(name)
        if register.kind == "fifo":
            return await dev.drain(name)
        return await dev.read(name, index)

    click.echo(json.dumps(_run(work)))


@main.command()
@click.argument("name")
@click.argument("value", nargs=-1, required=True)
@click.option("--index", type=int, help="Table entry.")
@click.option("--device", default="sim", show_default=True, help=DEVICE_HELP)
@click.option("--identity", help=IDENTITY_HELP)
@click.option("--manifest", type=click.Path(), default=None, help=MANIFEST_HELP)
def write(name, value, index, device, identity, manifest):
    """Write a register by name: VALUE is an integer or field=value pairs, e.g.
    `tickwire write feed.filters --index 0 group=0xE9360C6F port=26477 feed=0 line=0 enable=1`.

    The value is checked against the register map first (writable, fits, fields exist);
    nothing is written if it is refused."""
    parsed = _value(value)

    async def work():
        dev = await _open(device, identity, manifest)
        await dev.write(name, parsed, index)

    _run(work)


@main.command()
@click.option("--device", default="sim", show_default=True, help=DEVICE_HELP)
@click.option("--identity", help=IDENTITY_HELP)
@click.option("--interval", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds between samples.")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="Stop after this many samples (default: until interrupted).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per sample instead of a live table.")
@click.option("--log", "log_file", type=click.Path(dir_okay=False),
              help="Append alarms as they are raised to this file, one JSON object a line "
                   "(time, device, alarm).")
@click.option("--replay", type=click.IntRange(min=100), default=None, metavar="N",
              help="sim only: replay N messages of the default scenario, a tenth per sample.")
@click.option("--prometheus", "prometheus_port", type=click.IntRange(0, 65535), default=None,
              metavar="PORT", help="Also serve every counter, alarm and status register and "
              "the design identity to Prometheus at http://ADDR:PORT/metrics (0: any free "
              "port), from the latest sample. With --count, the last sample is served until "
              "scraped once (at most --prometheus-linger seconds).")
@click.option("--prometheus-addr", default="127.0.0.1", show_default=True, metavar="ADDR",
              help="Address the Prometheus exporter listens on.")
@click.option("--prometheus-linger", type=click.FloatRange(min=0), default=60.0,
              show_default=True, metavar="S",
              help="With --count: seconds to wait for a scrape of the last sample.")
@click.option("--manifest", type=click.Path(), default=None, help=MANIFEST_HELP)
def watch(device, identity, interval, count, as_json, log_file, replay, prometheus_port,
          prometheus_addr, prometheus_linger, manifest):
    """Live counters and alarms of a device, refreshed every --interval seconds; raised alarms
    are logged with timestamps. With --prometheus PORT, also a Prometheus exporter (one device
    sample per interval, every scrape serves the latest)."""
    import asyncio
    import datetime

    from rich.live import Live

    from tickwire.host import api

    def log(raised, sample_time):
        lines = [json.dumps({"time": sample_time, "device": device, "alarm": name})
                 for name in raised]
        for line in lines:
            click.echo(line, err=True)
        if log_file and lines:
            with open(log_file, "a") as out:
                out.write("\n".join(lines) + "\n")

    def render(status, rates):
        table = Table(title=f"{device} · identity {status['identity']} · "
                            f"{datetime.datetime.now():%H:%M:%S}")
        table.add_column("counter")
        table.add_column("value", justify="right")
        table.add_column("per second", justify="right")
        for name, value in status["counters"].items():
            if value:
                table.add_row(name, f"{value:,}", f"{rates.get(name, 0):,.0f}")
        for name, value in status["status"].items():
            table.add_row(name, json.dumps(value), "")
        return table

    async def work():
        dev = await _open(device, identity, manifest)
        between = api.scenario_feeder(dev, replay) if replay else None
        last, live, exporter, server = None, None, None, None
        if prometheus_port is not None:
            from tickwire.host import prometheus

            exporter = prometheus.Exporter(dev)
        if not as_json:
            live = Live(auto_refresh=False)
            live.start()
        try:
            async for status, raised in api.samples(dev, interval=interval, count=count,
                                                    between=between):
                now = datetime.datetime.now(datetime.UTC)
                if exporter is not None:
                    exporter.update(status, now.timestamp())
                    if server is None:      # once there is a sample to serve
                        server = prometheus.serve(dev, prometheus_port, prometheus_addr,
                                                  exporter=exporter)
                        click.echo(f"prometheus exporter on {server.url}", err=True)
                log(raised, now.isoformat())
                rates = {}
                if last is not None:
                    seconds = max((now - last[0]).total_seconds(), 1e-9)
                    rates = {k: (v - last[1].get(k, 0)) % (1 << 32) / seconds
                             for k, v in status["counters"].items()}
                last = (now, status["counters"])
                if as_json:
                    click.echo(json.dumps({"time": now.isoformat(), **status}))
                else:
                    live.update(render(status, rates), refresh=True)
            if server is not None:    # a bounded watch: its last sample reaches Prometheus
                deadline = asyncio.get_running_loop().time() + prometheus_linger
                while (not exporter.collected()
                       and asyncio.get_running_loop().time() < deadline):
                    await asyncio.sleep(0.05)
        finally:
            if live is not None:
                live.stop()
            if server is not None:
                server.close()

    try:
        _run(work)
    except KeyboardInterrupt:
        pass


@main.command()
@click.option("--device", default=None, help=DEVICE_HELP + " If given, compare with it.")
@click.option("--manifest", type=click.Path(), default=None,
              help="Compare with a board build's manifest instead of this host's gateware.")
def identity(device, manifest):
    """Print the design identity of the gateware this host is built from (or of a board
    build's manifest); with --device, also the device's, and exit non-zero if they differ."""
    from tickwire.hdl.platform.device import design_identity
    from tickwire.host import api

    if manifest is None:
        ours = design_identity()
        click.echo(f"host   {ours:016x}")
    else:
        from tickwire.bitstreams.manifest import ManifestError, expected_identity, read_manifest
        try:
            ours = expected_identity(read_manifest(manifest))
        except ManifestError as error:
            raise click.BadParameter(str(error), param_hint="--manifest") from None
        click.echo(f"build  {ours:016x}")
    if device is None:
        return

    async def work():
        return (await api.connect(device, check_identity=False)).identity

    reported = _run(work)
    click.echo(f"device {reported:016x}")
    if reported != ours:
        Console(stderr=True).print("[red]the device runs another design[/red]")
        sys.exit(1)


@main.command()
@click.argument("configs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--device", default="sim", show_default=True, help=DEVICE_HELP)
@click.option("--identity", help=IDENTITY_HELP)
@click.option("--check", is_flag=True, help="Validate against the build only; write nothing.")
@click.option("--manifest", type=click.Path(), default=None, help=MANIFEST_HELP)
def load(configs, device, identity, check, manifest):
    """Load configuration files (TOML) into a device: feed filters, symbols, strategies, risk
    limits, the order session (see host/examples/*.toml).

    All files are validated together against the build first (every error names the file, the
    field and the rule); nothing is written unless they are all valid; configuration registers
    are read back after."""
    from tickwire.host import api
    from tickwire.host import config as configuration

    if manifest is None:
        regs = api.register_map()
    else:
        from tickwire.bitstreams.manifest import ManifestError, manifest_register_map
        try:
            regs = manifest_register_map(manifest)
        except ManifestError as error:
            raise click.BadParameter(str(error), param_hint="--manifest") from None
    try:    # before the device is even opened
        plan = configuration.read(configs, regs)
    except configuration.ConfigError as error:
        Console(stderr=True).print("[red]refused, nothing written:[/red]")
        click.echo(str(error), err=True)
        sys.exit(1)
    names = " ".join(configs)
    if check:
        click.echo(f"{names}: valid ({plan.summary()})")
        return

    async def work():
        dev = await _open(device, identity, manifest)
        return await configuration.load(dev, configs)

    plan = _run(work)
    click.echo(f"{names}: loaded {plan.summary()} into {device}")


def _trading_command(name, action, done, *options):
    def command(device, identity, manifest, **values):
        from tickwire.host import api

        async def work():
            dev = await _open(device, identity, manifest)
            await action(api, dev, **values)
            return await dev.read("risk.killed"), await dev.read("risk.armed")

        try:
            killed, armed = _run(work)
        except RuntimeError as error:
            Console(stderr=True).print(f"[red]{error}[/red]")
            sys.exit(1)
        click.echo(f"{device}: {done} (armed {armed}, killed {killed})")

    for option in (*options, click.option("--identity", help=IDENTITY_HELP),
                   click.option("--manifest", type=click.Path(), default=None,
                                help=MANIFEST_HELP),
                   click.option("--device", default="sim", show_default=True, help=DEVICE_HELP)):
        command = option(command)
    return main.command(name=name, help=action.__doc__)(command)


async def _arm(api, dev):
    """Arm the device: orders may leave. Refused while the kill switch is set; the device is
    opened only if its design identity is this build's."""
    await api.arm(dev)


async def _disarm(api, dev):
    """Disarm the device: the risk gate passes no order."""
    await api.disarm(dev)


async def _kill(api, dev, clear):
    """Kill: no order passes and no new order frame starts (queued ones are flushed and
    logged). With --clear, clear the kill switch instead (the device stays disarmed)."""
    await (api.clear_kill(dev) if clear else api.kill(dev))


@main.command()
@click.option("--port", type=click.IntRange(0, 65535), default=7000, show_default=True,
              help="UDP port to serve on (0: any free port).")
@click.option("--bind", default="127.0.0.1", show_default=True,
              help="Address to listen on; datagrams from it enter the device as from the "
              "configured host, from any other address as a stranger's.")
@click.option("--token", default=None, metavar="HEX",
              help="The control token to load (32 hex digits; default: a random one, printed).")
@click.option("--seconds", type=click.FloatRange(min=0), default=None,
              help="Stop after this long (default: until interrupted).")
def serve(port, bind, token, seconds):
    """Serve the simulated NIC's UDP control channel on a real socket, as a board would: each
    datagram enters the Verilated device at MAC rx as an Ethernet/IPv4/UDP frame and the
    reply is what its gateware sends at MAC tx. Then, from another shell:
    TICKWIRE_CONTROL_TOKEN=<token> tickwire status --device udp://127.0.0.1:7000"""
    import asyncio
    import secrets
    import threading

    from tickwire.host.device import Device
    from tickwire.host.transports import SimTransport
    from tickwire.host.udp_control import TOKEN_BYTES
    from tickwire.sim.nic import shared_nic
    from tickwire.sim.nic_control import ControlServer, GatewareEndpoint

    try:
        secret = bytes.fromhex(token) if token else secrets.token_bytes(TOKEN_BYTES)
    except ValueError:
        secret = b""
    if len(secret) != TOKEN_BYTES or not any(secret):
        raise click.BadParameter(f"give {2 * TOKEN_BYTES} hex digits, not all zero",
                                 param_hint="--token")
    nic = shared_nic()
    device = Device(SimTransport(nic), nic.register_map)
    asyncio.run(device.write("control.token", int.from_bytes(secret, "big")))
    try:
        server = ControlServer(GatewareEndpoint(nic, host=bind), port, address=bind)
    except OSError as error:
        raise click.ClickException(f"cannot serve on {bind}:{port}: {error}") from None
    with server:
        click.echo(f"serving the simulated NIC's control channel on udp://{bind}:{server.port}"
                   f" (design identity {nic.identity:016x})")
        click.echo(f"TICKWIRE_CONTROL_TOKEN={secret.hex()}", err=True)
        sys.stdout.flush()
        try:
            threading.Event().wait(seconds)
        except KeyboardInterrupt:
            pass


_trading_command("arm", _arm, "armed")
_trading_command("disarm", _disarm, "disarmed")
_trading_command("kill", _kill, "kill switch written", click.option(
    "--clear", is_flag=True, help="Clear the kill switch instead of setting it."))


# Boards: bitstreams (tickwire.bitstreams) -------------------------------------------------------

@main.command()
@click.option("--board", type=click.Choice(["ecpix5", "arty"]), required=True,
              help="ecpix5: the bitstream, built with the YoWASP tools; arty: the Vivado build "
              "tree (not run).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Override a board build parameter (repeatable); see tickwire.bitstreams.plan.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for the build (default: build/boards/<board>/<identity>).")
@click.option("--timeout", type=click.IntRange(min=60), default=4 * 3600, show_default=True,
              help="Stop the tools after this many seconds.")
def build(board, params, out, timeout):
    """Build a board's bitstream (cached by the digest of its build plan) and print its timing
    report; the manifest beside it is what `arm --manifest` checks the board against."""
    import time

    from tickwire.bitstreams import plan

    try:
        overrides = plan.parse_overrides(params)
    except plan.ParameterError as error:
        raise click.BadParameter(str(error), param_hint="--param") from None
    console = Console()
    if board == "arty":
        from tickwire.bitstreams import arty
        try:
            folder = arty.write_tree(overrides, root=out)
        except plan.ParameterError as error:
            raise click.BadParameter(str(error), param_hint="--param") from None
        click.echo(f"Vivado build tree (not run) in {folder}")
        return

    from tickwire.bitstreams import ecpix5
    from tickwire.bitstreams.manifest import read_manifest

    start = time.monotonic()
    with console.status("building") as status:
        def progress(stage):
            status.update(f"[bold]{stage}[/bold]  {time.monotonic() - start:,.0f} s")
        try:
            folder = ecpix5.build(overrides, root=out, timeout=timeout, progress=progress)
        except plan.ParameterError as error:
            raise click.BadParameter(str(error), param_hint="--param") from None
        except ecpix5.BuildError as error:
            Console(stderr=True).print(f"[red]build failed:[/red] {error}", highlight=False)
            sys.exit(1)
    manifest = read_manifest(folder)
    table = Table(title=f"{board} · identity {manifest['identity']} · core "
                        f"{manifest['core_clock_mhz']:g} MHz · built in "
                        f"{manifest['build_seconds']:,.0f} s")
    for column in ("clock", "Fmax (MHz)", "constraint (MHz)"):
        table.add_column(column, justify="right" if column != "clock" else "left")
    for clock, v in manifest["fmax"].items():
        table.add_row(clock, f"{v['achieved_mhz']:.2f}", f"{v['constraint_mhz']:.2f}")
    console.print(table)
    console.print("utilisation: " + ", ".join(
        f"{bel} {v['used']}/{v['available']}" for bel, v in manifest["utilisation"].items()))
    click.echo(f"bitstream {folder / manifest['bitstream']['file']}")
    click.echo(f"manifest  {folder / 'manifest.json'}")


@main.command()
@click.argument("bitstream", type=click.Path(dir_okay=False))
@click.option("--board", type=click.Choice(["ecpix5", "arty"]), required=True)
@click.option("--write-flash", is_flag=True, help="Write the configuration flash (kept at power "
              "off) instead of loading the FPGA's SRAM.")
@click.option("--dry-run", is_flag=True, help="Print the openFPGALoader command only.")
def flash(bitstream, board, write_flash, dry_run):
    """Load a bitstream onto a board with openFPGALoader."""
    from tickwire.bitstreams import flash as loader

    try:
        command = loader.flash_command(board, bitstream, to_flash=write_flash)
        if dry_run:
            click.echo(" ".join(command))
            return
        loader.flash(board, bitstream, to_flash=write_flash)
    except loader.FlashError as error:
        Console(stderr=True).print(f"[red]error:[/red] {error}", highlight=False)
        sys.exit(1)
    click.echo(f"{bitstream} loaded onto the {board}")


@main.command(name="replay")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--symbol", "symbols", multiple=True, metavar="SYM",
              help="Subscribe SYM (repeatable): resolved through the file's Stock Directory "
              "(LOBSTER: the ticker of its file name).")
@click.option("--bbo", type=click.Path(dir_okay=False), metavar="OUT.csv",
              help="Write the gateware's top of book of the symbols after every message.")
@click.option("--check-book", is_flag=True,
              help="Compare the gateware's top of book after every message with the file's own "
              "book (LOBSTER) and report every mismatch; exit status 1 if any.")
def replay_command(file, symbols, bbo, check_book):
    """Replay a recorded FILE through the Verilated gateware.

    FILE is a pcap of MoldUDP64/ITCH 5.0 frames, a Nasdaq ITCH 5.0 daily file (2-byte length
    + message, optionally gzip) or a LOBSTER message file (TICKER_date_start_end_message_N.csv,
    its orderbook file beside it). The messages go through the device's feed handler and
    order book, Verilated and configured by the host's own code; the top of book reported is
    the gateware's BookUpdate stream. Prices are ITCH Price(4) integers; an empty side is
    price 0, size 0.
    """
    from tickwire.sim import recorded

    console = Console(stderr=True)
    try:
        with console.status(f"reading {file}"):
            recording = recorded.read_recording(file, symbol=symbols[0] if symbols else None)
        names = symbols or (list(recording.directory) if recording.kind == "lobster" else [])
        subscribed = recorded.resolve(recording, names)
        if check_book and recording.book is None:
            raise recorded.ReplayError(f"{file}: --check-book needs the file's own book, "
                                       "which only LOBSTER files carry")
        with console.status("building and loading the Verilated device (cached)"):
            top = recorded.shared_top()
        with console.status(f"replaying {recording.messages:,} messages"):
            replayed = recorded.replay(recording, subscribed, top=top)
        if bbo:
            recorded.write_bbo(replayed, bbo)
        mismatches = ([(name, m) for name in subscribed
                       for m in recorded.check_book(replayed, name)] if check_book else [])
    except recorded.ReplayError as error:
        raise click.ClickException(str(error)) from None
    for line in recorded.summary(replayed):
        click.echo(line)
    for name, (index, expected, got) in mismatches:
        click.echo(f"message {index}: {name} file ask {expected[1]}@{expected[0]} bid "
                   f"{expected[3]}@{expected[2]}, gateware ask {got[1]}@{got[0]} bid "
                   f"{got[3]}@{got[2]}")
    if check_book:
        click.echo(f"check-book: {len(mismatches)} mismatches over {recording.messages:,} "
                   "messages")
        if mismatches:
            sys.exit(1)
