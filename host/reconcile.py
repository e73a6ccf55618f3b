"""Reconciliation of the three records of each order: the gateware's order log (what was sent),
the exchange's OUCH replies (what it did) and the FIX drop copy (what it reports).

    result = reconcile(log_entries, ouch_replies, reports, clordid_prefix="TWIRE1",
                       symbols={0: "AAPL"})
    if result.alarms:
        print(result.to_json())

Orders are keyed by OUCH UserRefNum (one SoupBinTCP session); the drop copy's ClOrdID is the
encoder's: the 6-character prefix then the UserRefNum in 8 upper-case hex digits. Drop copy
trades are matched to OUCH executions by match number (FIX 527 SecondaryExecID) when every
trade of the order carries one, else in order.

Alarms (``Alarm.kind``):

- ``unacknowledged``: sent, but neither OUCH Accepted nor Rejected;
- ``not_in_log``: an OUCH reply or a drop copy report for an order the log never sent
  (``fill_not_in_log`` when the report is a trade);
- ``contradicts_log``: OUCH Accepted or a drop copy report whose side, quantity, price,
  symbol or ClOrdID differ from the logged order;
- ``contradicts_ouch``: a drop copy report whose quantity or price differ from OUCH's (a trade
  from its execution, a new/cancel/reject from the OUCH message of the same kind);
- ``missing_report``: an OUCH message of the order with no drop copy report for it;
- ``report_without_ouch``: a drop copy report with no OUCH message for it;
- ``overfill``: more shares executed than ordered;
- ``through_limit``: an execution at a price worse than the order's limit.
"""

import dataclasses
import json
from collections import defaultdict

__all__ = ["Alarm", "Reconciliation", "clordid", "reconcile"]

TRADE, NEW, CANCELED, REJECTED = "F", "0", "4", "8"
_SELLS_FIX = {"2", "5", "6"}
_SELLS_OUCH = {"S", "T", "E"}


def clordid(prefix, user_ref_num):
    """The order encoder's ClOrdID (see `tickwire.hdl.order.encoder`)."""
    if len(prefix) > 6:
        raise ValueError(f"ClOrdID prefix {prefix!r} is longer than 6 characters")
    return f"{prefix:<6}{user_ref_num:08X}"


@dataclasses.dataclass(frozen=True)
class Alarm:
    kind: str
    user_ref_num: int | None
    cl_ord_id: str
    detail: str


@dataclasses.dataclass
class Reconciliation:
    orders: int = 0            # orders the log says were sent
    flushed: int = 0           # log entries of orders flushed by a kill, never sent
    matched: int = 0           # sent orders without any alarm
    ouch_messages: int = 0
    reports: int = 0
    alarms: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        return not self.alarms

    def counts(self):
        out = defaultdict(int)
        for alarm in self.alarms:
            out[alarm.kind] += 1
        return dict(out)

    def to_dict(self):
        return dataclasses.asdict(self) | {"counts": self.counts()}

    def to_json(self, **kwargs):
        return json.dumps(self.to_dict(), **kwargs)


@dataclasses.dataclass
class _Order:
    user_ref_num: int
    sell: bool
    quantity: int
    price: int
    symbol: str | None
    cl_ord_id: str
    ouch: dict = dataclasses.field(default_factory=lambda: defaultdict(list))
    reports: dict = dataclasses.field(default_factory=lambda: defaultdict(list))


def _text(value):
    value = value.decode("ascii") if isinstance(value, (bytes, bytearray)) else str(value)
    return value.rstrip()


def _log_fields(entry):
    """(sent, UserRefNum, side 0/1, quantity, price, slot) of a `tickwire.sim.ouch.LogEntry`
    or of a drained ``order.log`` register dict."""
    if isinstance(entry, dict):
        return (entry["sent"], entry["user_ref_num"], entry["side"], entry["quantity"],
                entry["price"], entry.get("slot"))
    intent = entry.intent
    return (entry.sent, entry.user_ref_num, intent["side"], intent["quantity"],
            intent["price"], intent.get("slot"))


def reconcile(log_entries, ouch_replies, reports, *, clordid_prefix, symbols=None):
    """Match every order of `log_entries` with its OUCH replies (dicts as
    `tickwire.sim.exchange.messages.decode` gives them) and drop copy `reports`
    (`ExecutionReport`s); `symbols` maps log slot -> symbol (None: symbols not checked).
    Returns a `Reconciliation`."""
    result = Reconciliation()
    alarms = result.alarms
    orders, by_clordid = {}, {}
    for entry in log_entries:
        sent, urn, side, quantity, price, slot = _log_fields(entry)
        if not sent:
            result.flushed += 1
            continue
        if urn in orders:
            raise ValueError(f"the order log sends UserRefNum {urn} twice")
        symbol = symbols[slot] if symbols is not None else None
        order = _Order(urn, side == 1, quantity, price, symbol, clordid(clordid_prefix, urn))
        orders[urn] = by_clordid[order.cl_ord_id] = order
    result.orders = len(orders)

    for message in ouch_replies:
        kind = _text(message["type"])
        if kind == "S":
            continue
        result.ouch_messages += 1
        order = orders.get(message["user_ref_num"])
        if order is None:
            alarms.append(Alarm("not_in_log", message["user_ref_num"], "",
                                f"OUCH {kind} for a UserRefNum the log never sent"))
            continue
        order.ouch[kind].append(message)

    for report in reports:
        result.reports += 1
        order = by_clordid.get(report.cl_ord_id)
        if order is None:
            alarms.append(Alarm("fill_not_in_log" if report.exec_type == TRADE else "not_in_log",
                                None, report.cl_ord_id,
                                f"drop copy {report.exec_id} (150={report.exec_type}) for a "
                                "ClOrdID the log never sent"))
            continue
        order.reports[report.exec_type].append(report)

    for order in orders.values():
        found = _check(order)
        alarms.extend(found)
        result.matched += not found
    return result


def _check(order):
    found = []

    def alarm(kind, detail):
        found.append(Alarm(kind, order.user_ref_num, order.cl_ord_id, detail))

    acks = order.ouch["A"] + order.ouch["J"]
    if not acks:
        alarm("unacknowledged", "sent, but no OUCH Accepted or Rejected")
    for accepted in order.ouch["A"]:
        logged = (order.sell, order.quantity, order.price, order.cl_ord_id)
        said = (_text(accepted["side"]) in _SELLS_OUCH, accepted["quantity"], accepted["price"],
                _text(accepted["clordid"]))
        if order.symbol is not None:
            logged += (order.symbol,)
            said += (_text(accepted["symbol"]),)
        if said != logged:
            alarm("contradicts_log", f"OUCH Accepted (sell, qty, price, ClOrdID[, symbol]) "
                                     f"{said} but the log sent {logged}")

    for kind in (NEW, CANCELED, REJECTED, TRADE):
        for report in order.reports[kind]:
            logged = (order.sell, order.quantity, order.price)
            said = (report.side in _SELLS_FIX, report.order_qty, report.price)
            if order.symbol is not None:
                logged += (order.symbol,)
                said += (report.symbol,)
            if said != logged:
                alarm("contradicts_log", f"drop copy {report.exec_id} (sell, qty, price"
                                         f"[, symbol]) {said} but the log sent {logged}")

    _pair(order, "A", NEW, alarm, lambda o: (o["quantity"], o["price"]),
          lambda r: (r.order_qty, r.price))
    _pair(order, "J", REJECTED, alarm, lambda o: (), lambda r: ())
    _pair(order, "C", CANCELED, alarm, lambda o: (o["quantity"],),     # shares canceled
          lambda r: (r.order_qty - r.cum_qty,))
    _pair_trades(order, alarm)

    executed = sum(e["quantity"] for e in order.ouch["E"])
    if executed > order.quantity:
        alarm("overfill", f"{executed} shares executed of {order.quantity}")
    for e in order.ouch["E"]:
        if (e["price"] < order.price) if order.sell else (e["price"] > order.price):
            alarm("through_limit", f"executed at {e['price']}, limit {order.price}")
    return found


def _pair(order, ouch_kind, exec_type, alarm, from_ouch, from_report):
    """OUCH messages and drop copy reports of one kind, in order: counts and fields agree."""
    ouch, reports = order.ouch[ouch_kind], order.reports[exec_type]
    for o, r in zip(ouch, reports, strict=False):
        if from_ouch(o) != from_report(r):
            alarm("contradicts_ouch", f"drop copy {r.exec_id} says {from_report(r)}, "
                                      f"OUCH {ouch_kind} says {from_ouch(o)}")
    for _ in ouch[len(reports):]:
        alarm("missing_report", f"OUCH {ouch_kind} without a drop copy report (150={exec_type})")
    for r in reports[len(ouch):]:
        alarm("report_without_ouch", f"drop copy {r.exec_id} (150={exec_type}) without "
                                     f"an OUCH {ouch_kind}")


def _pair_trades(order, alarm):
    executions, trades = order.ouch["E"], order.reports[TRADE]
    if trades and all(t.match_id for t in trades):
        by_match = {e["match_number"]: e for e in executions}
        paired = [(by_match.pop(int(t.match_id), None), t) for t in trades]
        unmatched = list(by_match.values())
    else:
        paired = list(zip(executions, trades, strict=False))
        paired += [(None, t) for t in trades[len(executions):]]
        unmatched = executions[len(trades):]
    for e, t in paired:
        if e is None:
            alarm("report_without_ouch", f"drop copy trade {t.exec_id} without an OUCH "
                                         "execution")
        elif (e["quantity"], e["price"]) != (t.last_qty, t.last_px):
            alarm("contradicts_ouch", f"drop copy trade {t.exec_id}: {t.last_qty} at "
                                      f"{t.last_px}, OUCH: {e['quantity']} at {e['price']}")
    for e in unmatched:
        alarm("missing_report", f"OUCH execution (match {e['match_number']}) without a drop "
                                "copy trade")
