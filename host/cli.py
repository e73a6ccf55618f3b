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
@click.option("--messages", default=20_000, show_default=True,
              help="ITCH messages in the generated session.")
@click.option("--seed", default=2026, show_default=True, help="Scenario random seed.")
@click.option("--loss", nargs=2, type=float, default=(0.02, 0.02), show_default=True,
              help="Packet loss probability on lines A and B.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False),
              help="Also write the summary as JSON to this file.")
def sim(messages, seed, loss, json_out):
    """Replay the bundled default scenario through the Verilated feed handler.

    A deterministic trading session (8 symbols, adds, executions, cancels, deletes and
    replaces around a random-walk mid price) is packed into MoldUDP64 packets, sent on lines A
    and B with independent loss, and decoded by the gateware's Verilog in Verilator.
    """
    from tickwire.sim.replay import replay
    from tickwire.sim.scenario import ab_frames, default_filters, order_flow

    console = Console(stderr=True)
    if messages < 100:
        raise click.BadParameter("at least 100 messages", param_hint="--messages")
    if not all(0.0 <= p < 1.0 for p in loss):
        raise click.BadParameter("probabilities in [0, 1)", param_hint="--loss")
    with console.status("building the scenario"):
        flow = order_flow(messages, seed=seed)
        frames = ab_frames(b"20261122A1", flow, seed=seed, loss=tuple(loss))
    with console.status("building and loading the Verilated feed handler (cached)"):
        from tickwire.sim.verilated_feed import VerilatedFeedHandler
        feed = VerilatedFeedHandler()
    with console.status(f"replaying {len(frames)} frames"):
        summary = replay(frames, default_filters(), messages_offered=len(flow), feed=feed)
    report = _report(summary)
    _print(report, Console())
    if json_out:
        with open(json_out, "w") as out:
            json.dump(report, out, indent=2)
    delivered = summary.run.counters["mold"]["messages"]
    gap_messages = sum(g["value"] for g in summary.gaps)
    if delivered + gap_messages != len(flow):
        console.print(f"[red]{len(flow) - delivered - gap_messages} messages unaccounted for")
        sys.exit(1)


def _report(summary):
    run, counters = summary.run, summary.run.counters
    return {
        "frames": summary.frames,
        "packets_accepted": counters["udp"]["accepted"],
        "messages_offered": summary.messages_offered,
        "messages_delivered": counters["mold"]["messages"],
        "duplicates_dropped": counters["mold"]["duplicate_messages"],
        "book_events": len(run.events),
        "host_notices": len(run.notices),
        "gaps": [{"first": g["sequence"], "count": g["value"]} for g in summary.gaps],
        "message_types": dict(sorted(summary.message_types().items())),
        "drops": summary.drops(),
        "latency_cycles": summary.latency,
        "words_per_cycle": run.beats / max(run.cycles, 1),
        "sim_messages_per_second": counters["mold"]["messages"] / max(summary.seconds, 1e-9),
        "sim_cycles": run.cycles,
    }


def _print(report, console):
    table = Table(title="tickwire sim: default scenario through the Verilated feed handler",
                  show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in ("frames", "packets_accepted", "messages_offered", "messages_delivered",
                "duplicates_dropped", "book_events", "host_notices", "sim_cycles"):
        table.add_row(key.replace("_", " "), f"{report[key]:,}")
    table.add_row("gaps (both lines lost)", ", ".join(
        f"{g['first']}+{g['count']}" for g in report["gaps"]) or "none")
    table.add_row("drops and errors", ", ".join(
        f"{k}={v}" for k, v in report["drops"].items()) or "none")
    latency = report["latency_cycles"]
    table.add_row("latency, last byte in -> event (cycles)",
                  f"min {latency['min']} / median {latency['median']} / p99 {latency['p99']} "
                  f"/ max {latency['max']}" if latency else "-")
    table.add_row("MAC rx load (beats per cycle, all accepted)", f"{report['words_per_cycle']:.3f}")
    table.add_row("simulation speed (messages/s)", f"{report['sim_messages_per_second']:,.0f}")
    console.print(table)
    types = Table(title="messages by ITCH type")
    for name in report["message_types"]:
        types.add_column(name, justify="right")
    types.add_row(*(f"{v:,}" for v in report["message_types"].values()))
    console.print(types)


@main.command()
def version():
    """Print the tickwire version."""
    from importlib.metadata import version as package_version
    click.echo(package_version("tickwire"))
