"""Adjust a threshold taker on a running device, from a host script.

    python host/examples/adjust_thresholds.py --device sim AAPL 140.90 141.25

Loads the example desk and risk files, arms the device, then moves one symbol's thresholds
(the new parameters take effect from the next book update; rewriting them also resets that
symbol's memory of levels already traded). On a board, use --device udp://... or pcie:...;
the configuration is validated against the build before anything is written.
"""

import argparse
import asyncio
from pathlib import Path

from tickwire.host import api, config

EXAMPLES = Path(__file__).resolve().parent


async def adjust(device_spec, symbol, buy, sell, quantity):
    device = await api.connect(device_spec)     # refuses a device running another build
    plan = await config.load(device, [EXAMPLES / "desk.toml", EXAMPLES / "risk.toml"])
    await api.start_session(device, sequence=1, ack=1, window=65535)
    await api.arm(device)
    # The same rules as the files: write a small TOML fragment and let the parser check it.
    fragment = (f'[[symbol]]\nname = "{symbol}"\nlocate = {plan.symbols[symbol][0]}\n'
                f"slot = {plan.symbols[symbol][1]}\n\n[[strategy.taker]]\n"
                f'symbol = "{symbol}"\nbuy_at_or_below = {buy}\nsell_at_or_above = {sell}\n'
                f"quantity = {quantity}\n")
    update = config.parse(fragment, device.map, "adjustment")
    for write in update.writes:
        if write.register.startswith("strategy."):
            await device.write(write.register, write.value, index=write.index)
    return update["strategy.taker_params"][0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="sim")
    parser.add_argument("--quantity", type=int, default=100)
    parser.add_argument("symbol")
    parser.add_argument("buy", type=float)
    parser.add_argument("sell", type=float)
    args = parser.parse_args()
    entry = asyncio.run(adjust(args.device, args.symbol, args.buy, args.sell, args.quantity))
    print(f"{args.symbol}: buy at or below {entry['buy_price'] / 1e4:.4f}, sell at or above "
          f"{entry['sell_price'] / 1e4:.4f}, {entry['quantity']} shares")


if __name__ == "__main__":
    main()
