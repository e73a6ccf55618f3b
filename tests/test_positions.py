"""Positions and P&L (host/positions.py) against recomputations made here: hand-computed FIFO
and average-cost cases, a brute-force share-by-share FIFO list, and cash-flow conservation."""

import itertools
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickwire.host.dropcopy import ExecutionReport
from tickwire.host.positions import Positions, RiskUpdate, flushed_release
from tickwire.sim import ouch as sim_ouch

_ids = itertools.count(1)


def report(exec_type, side, qty, px, *, symbol="AAPL", clordid="ALPHA 00000001", order_qty=None,
           leaves=0):
    """A drop copy report; prices in dollars (converted to 4 implied decimals here)."""
    n = next(_ids)
    return ExecutionReport(
        exec_id=f"X{n}", cl_ord_id=clordid, order_id=str(n), exec_type=exec_type,
        ord_status="2", symbol=symbol, side={"buy": "1", "sell": "2", "short": "5"}[side],
        order_qty=order_qty or qty, price=int(Decimal(px) * 10000),
        last_qty=qty if exec_type == "F" else 0,
        last_px=int(Decimal(px) * 10000) if exec_type == "F" else 0,
        cum_qty=0, leaves_qty=leaves, avg_px="0", transact_time="")


def fill(side, qty, px, **kw):
    return report("F", side, qty, px, **kw)


def test_fifo_differs_from_average_cost_by_hand():
    p = Positions(fee_per_share=Decimal("0.003"))
    for r in (fill("buy", 100, "10"), fill("buy", 100, "12"), fill("sell", 150, "13")):
        p.apply(r)
    # FIFO: 100 x (13 - 10) + 50 x (13 - 12) = 350; average cost 11: 150 x 2 = 300.
    assert p.pnl().realised == Decimal(350)
    assert p.position("AAPL") == 50
    assert p.pnl().unrealised == Decimal(50)     # marked to the last fill (13) until a mid
    p.mark("AAPL", 115000)                       # 11.50: 50 left at 12 -> -25
    assert p.pnl().unrealised == Decimal(-25)
    assert p.pnl().fees == Decimal("1.050")      # 350 shares x 0.003
    assert p.pnl().total == Decimal("323.950")


def test_short_cover_and_flip_by_hand():
    p = Positions()
    p.apply(fill("short", 100, "20"))
    p.apply(fill("buy", 40, "18"))               # covers 40 of the short: +80
    assert (p.position("AAPL"), p.pnl().realised) == (-60, Decimal(80))
    p.apply(fill("buy", 100, "19"))              # covers 60 (+60), opens 40 long at 19
    assert (p.position("AAPL"), p.pnl().realised) == (40, Decimal(140))
    p.mark("AAPL", Decimal("190500.5"))          # a half-tick mid
    assert p.pnl().unrealised == Decimal("2.002")      # 40 x 0.05005


def test_per_strategy_from_the_clordid_prefix_or_a_mapping():
    p = Positions()
    p.apply(fill("buy", 10, "5", clordid="ALPHA 0000000A"))
    p.apply(fill("sell", 4, "6", clordid="BETA  0000000B"))
    assert p.position("AAPL", "ALPHA") == 10 and p.position("AAPL", "BETA") == -4
    assert p.position("AAPL") == 6
    mapped = Positions(strategy_of=lambda clordid: "mm" if clordid.endswith("A") else "taker")
    mapped.apply(fill("buy", 10, "5", clordid="ALPHA 0000000A"))
    assert mapped.position("AAPL", "mm") == 10 and mapped.position("AAPL", "taker") == 0
    rows = json.loads(json.dumps(p.snapshot()))
    assert [(r["strategy"], r["position"]) for r in rows] == [("ALPHA", 10), ("BETA", -4)]


def test_risk_updates_account_for_every_share_of_an_order():
    p = Positions()
    assert p.apply(report("0", "buy", 0, "10", order_qty=100, leaves=100)) == []
    assert p.apply(fill("buy", 30, "10", order_qty=100)) == [RiskUpdate("AAPL", 0, 30, 0)]
    assert p.apply(report("4", "buy", 0, "10", order_qty=100)) == [RiskUpdate("AAPL", 0, 0, 70)]
    assert p.apply(report("8", "sell", 0, "10", order_qty=50, clordid="ALPHA 00000002")) \
        == [RiskUpdate("AAPL", 1, 0, 50)]
    assert RiskUpdate("AAPL", 1, 0, 50).register_value({"AAPL": 7}) == \
        {"write": 1, "index": 7, "side": 1, "filled": 0, "released": 50}
    with pytest.raises(KeyError, match="MSFT"):
        RiskUpdate("MSFT", 1, 0, 50).register_value({"AAPL": 7})


def test_orders_flushed_by_a_kill_are_released():
    encoder = sim_ouch.EncoderModel(sim_ouch.Template(), ["AAPL", "MSFT"])
    flushed = encoder.flush(dict(slot=1, side=1, quantity=40, price=10, tif=0))
    assert flushed_release(flushed, ["AAPL", "MSFT"]) == RiskUpdate("MSFT", 1, 0, 40)
    drained = dict(sent=0, slot=0, side=0, quantity=7, user_ref_num=3)
    assert flushed_release(drained, {0: "AAPL"}) == RiskUpdate("AAPL", 0, 0, 7)
    _, sent = encoder.send(dict(slot=1, side=1, quantity=40, price=10, tif=0))
    with pytest.raises(ValueError, match="drop copy"):
        flushed_release(sent, ["AAPL", "MSFT"])


def test_daily_loss_limit_kills_exactly_once():
    calls = []
    p = Positions(daily_loss_limit=Decimal(100), on_kill=calls.append)
    p.apply(fill("buy", 100, "10"))
    p.mark("AAPL", 90000)                        # -100: not below the limit
    assert calls == [] and p.killed is None
    p.mark("AAPL", 89999)                        # -100.01
    p.mark("AAPL", 50000)
    p.apply(fill("sell", 100, "5"))
    assert len(calls) == 1 and "-100" in calls[0] and p.killed == calls[0]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="negative"):
        Positions(fee_per_share=Decimal("-0.01"))
    with pytest.raises(ValueError, match="positive"):
        Positions(daily_loss_limit=0)
    bad = ExecutionReport("X", "C", "1", "F", "2", "AAPL", "9", 1, 1, 1, 1, 0, 0, "0", "")
    with pytest.raises(ValueError, match="side"):
        Positions().apply(bad)


trades = st.lists(st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 500),
                            st.integers(1, 2_000_000)), max_size=40)


@given(trades)
def test_long_only_fifo_equals_sell_value_minus_oldest_cost(raw):
    p = Positions()
    shares = []                                  # one price per share held, oldest first
    sell_value = cost_of_sold = 0
    for side, qty, price in raw:
        if side == "sell":
            qty = min(qty, len(shares))
            if not qty:
                continue
            sell_value += qty * price
            cost_of_sold += sum(shares[:qty])
            del shares[:qty]
        else:
            shares += [price] * qty
        p.apply(fill(side, qty, Decimal(price) / 10000))
    assert p.pnl().realised == Decimal(sell_value - cost_of_sold) / 10000
    assert p.position("AAPL") == len(shares)


@given(trades, st.integers(0, 2_000_000))
def test_fifo_with_shorts_against_share_by_share_lots(raw, mark):
    p = Positions(fee_per_share=Decimal("0.0005"))
    held = []                                    # (+1 or -1, price) per share, oldest first
    realised = cash = position = traded = 0
    for side, qty, price in raw:
        sign = 1 if side == "buy" else -1
        for _ in range(qty):
            if held and held[0][0] == -sign:
                lot_sign, lot_price = held.pop(0)
                realised += lot_sign * (price - lot_price)
            else:
                held.append((sign, price))
        cash -= sign * qty * price
        position += sign * qty
        traded += qty
        p.apply(fill(side, qty, Decimal(price) / 10000))
    p.mark("AAPL", mark)
    pnl = p.pnl()
    assert pnl.realised == Decimal(realised) / 10000
    assert p.position("AAPL") == position == sum(s for s, _ in held)
    # Whatever the lot method, realised + unrealised is the cash flow plus the marked position.
    assert pnl.realised + pnl.unrealised == Decimal(cash + position * mark) / 10000
    assert pnl.fees == Decimal("0.0005") * traded

