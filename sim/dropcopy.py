"""The simulated exchange's FIX 4.4 drop copy: a QuickFIX acceptor that sends one
ExecutionReport (35=8) for every `OrderEvent`.

    with DropCopyAcceptor(tmp_path / "exchange") as exchange:   # listens on 127.0.0.1
        ...                                                      # host initiator logs on
        exchange.send(event)

QuickFIX owns the session layer: sequence numbers in a FileStore under the work directory,
heartbeats, resends (PossDup 43=Y) on a ResendRequest. A report sent while no initiator is
logged on is stored and reaches it through the resend its Logon's sequence gap triggers.
QuickFIX runs in a child process (`python -m tickwire.sim.dropcopy`, driven over a pipe): see
`_Engine` for why.
"""

import dataclasses
import datetime
import json
import os
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal

import quickfix as fix

from tickwire.host.dropcopy import BEGIN_STRING, session_settings
from tickwire.sim.exchange.events import EventKind, OrderEvent

__all__ = ["DropCopyAcceptor", "execution_report", "fix_price"]

EXEC_TYPE = {EventKind.ACCEPTED: "0", EventKind.CANCELED: "4", EventKind.REJECTED: "8",
             EventKind.EXECUTED: "F"}
SIDE = {"B": "1", "S": "2", "T": "5", "E": "6"}      # OUCH side -> FIX 54 (E: short exempt)
TIME_IN_FORCE = {"0": "0", "3": "3"}                 # OUCH day / IOC -> FIX 59


def fix_price(price):
    """An integer price with 4 implied decimals as a FIX decimal string (``1234500`` ->
    ``"123.4500"``)."""
    if price < 0:
        raise ValueError(f"negative price {price}")
    return f"{price // 10000}.{price % 10000:04d}"


def _transact_time(date, time_ns):
    midnight = datetime.datetime.combine(date, datetime.time())
    stamp = midnight + datetime.timedelta(microseconds=time_ns // 1000)
    return stamp.strftime("%Y%m%d-%H:%M:%S.%f")


def _ord_status(event):
    if event.kind is EventKind.ACCEPTED:
        return "0"
    if event.kind is EventKind.EXECUTED:
        return "1" if event.leaves_quantity else "2"
    return "4" if event.kind is EventKind.CANCELED else "8"


def execution_report(event, *, avg_px, date):
    """The ExecutionReport (a `quickfix.Message`, body only: QuickFIX fills the header when it
    sends) for `event`; `avg_px` is the order's average execution price (a Decimal)."""
    if not isinstance(event, OrderEvent):
        raise TypeError(f"expected an OrderEvent, got {type(event).__name__}")
    if event.side not in SIDE:
        raise ValueError(f"{event.event_id}: OUCH side {event.side!r} has no FIX Side")
    message = fix.Message()
    message.getHeader().setField(35, "8")
    fields = [
        (37, str(event.order_id) if event.order_id else "NONE"),
        (11, event.cl_ord_id),
        (17, event.event_id),
        (150, EXEC_TYPE[event.kind]),
        (39, _ord_status(event)),
        (55, event.symbol),
        (54, SIDE[event.side]),
        (38, str(event.order_quantity)),
        (44, fix_price(event.price)),
        (32, str(event.last_quantity)),
        (31, fix_price(event.last_price)),
        (151, str(event.leaves_quantity)),
        (14, str(event.cumulative_quantity)),
        (6, str(avg_px)),
        (60, _transact_time(date, event.time_ns)),
    ]
    if event.time_in_force in TIME_IN_FORCE:
        fields.append((59, TIME_IN_FORCE[event.time_in_force]))
    if event.kind is EventKind.EXECUTED:
        fields.append((527, str(event.match_number)))      # SecondaryExecID
    if event.reason:
        fields.append((58, event.reason))
    for tag, value in fields:
        message.setField(tag, value)
    return message


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _Application(fix.Application):
    def __init__(self):
        super().__init__()
        self.logged_on = threading.Event()

    def onCreate(self, session_id):
        pass

    def onLogon(self, session_id):
        self.logged_on.set()

    def onLogout(self, session_id):
        self.logged_on.clear()

    def toAdmin(self, message, session_id):
        pass

    def fromAdmin(self, message, session_id):
        pass

    def toApp(self, message, session_id):
        pass

    def fromApp(self, message, session_id):
        pass        # a drop copy only sends


class _Engine:
    """The QuickFIX acceptor itself, run in a child process by `DropCopyAcceptor`:
    quickfix-py 0.0.3's SocketAcceptor.stop races its own thread once a peer has dropped
    (a segfault in SocketServer::close), so the child ends with ``os._exit`` instead."""

    def __init__(self, config, session_id, date):
        self.session_id, self.date = session_id, date
        self.settings = fix.SessionSettings(config)
        self.store_factory = fix.FileStoreFactory(self.settings)
        self.log_factory = fix.FileLogFactory(self.settings)
        self.application = _Application()
        self.acceptor = fix.SocketAcceptor(self.application, self.store_factory,
                                           self.settings, self.log_factory)
        self.executions = {}        # (session, UserRefNum) -> {match number: (qty, price)}
        self.acceptor.start()

    def avg_px(self, event):
        fills = self.executions.setdefault((event.session, event.user_ref_num), {})
        if event.kind is EventKind.EXECUTED:
            fills[event.match_number] = (event.last_quantity, event.last_price)
        shares = sum(q for q, _ in fills.values())
        if not shares:
            return Decimal(0)
        value = sum(q * p for q, p in fills.values())
        return (Decimal(value) / shares / 10000).quantize(Decimal("0.000001"))

    def send(self, event, poss_resend):
        message = execution_report(event, avg_px=self.avg_px(event), date=self.date)
        if poss_resend:
            message.getHeader().setField(97, "Y")
        if not fix.Session.sendToTarget(message, self.session_id):
            raise RuntimeError(f"{event.event_id}: QuickFIX refused the ExecutionReport")

    def status(self):
        session = fix.Session.lookupSession(self.session_id)
        return {"logged_on": self.application.logged_on.is_set(),
                "next_sender_seq": session.getExpectedSenderNum()}

    def logout(self, timeout=3.0):
        if self.application.logged_on.is_set():
            fix.Session.lookupSession(self.session_id).logout()
            deadline = time.monotonic() + timeout
            while self.application.logged_on.is_set() and time.monotonic() < deadline:
                time.sleep(0.005)


def _serve(arguments):
    """The child's loop: one JSON request a line on stdin, one JSON answer a line on stdout."""
    config, sender, target, date = arguments
    engine = _Engine(config, fix.SessionID(BEGIN_STRING, sender, target),
                     datetime.date.fromisoformat(date))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["op"] == "send":
                fields = dict(request["event"], kind=EventKind(request["event"]["kind"]))
                engine.send(OrderEvent(**fields), request["poss_resend"])
                answer = {}
            elif request["op"] == "status":
                answer = engine.status()
            else:
                if request["logout"]:
                    engine.logout()
                break
        except (ValueError, TypeError, RuntimeError) as error:
            answer = {"error": str(error), "type": type(error).__name__}
        print(json.dumps(answer), flush=True)
    try:
        print(json.dumps({}), flush=True)
    finally:
        os._exit(0)     # not SocketAcceptor.stop, see _Engine


class DropCopyAcceptor:
    """The exchange end of the drop copy session (SenderCompID `sender`, TargetCompID
    `target`), listening on `host`:`port` (by default a free loopback port, chosen by
    `start`). `trade_date` (default: today, UTC) dates TransactTime, since events carry
    nanoseconds since midnight.
    The work `directory` keeps the FileStore (and QuickFIX's logs): an acceptor started again
    on it continues the session's sequence numbers. QuickFIX runs in a child process (see
    `_Engine`); `send` returns once QuickFIX has sent or stored the report."""

    def __init__(self, directory, *, port=None, host="127.0.0.1", sender="TWEXCH",
                 target="TICKWIRE", trade_date=None):
        self.port, self._fixed_port, self.host = port, port is not None, host
        self.date = trade_date or datetime.datetime.now(datetime.UTC).date()
        self._settings = dict(directory=directory, sender=sender, target=target)
        self._child = None
        self._lock = threading.Lock()

    def _configure(self):
        if not self._fixed_port:
            self.port = free_port(self.host)
        s = self._settings
        config = session_settings(s["directory"], "acceptor", sender=s["sender"],
                                  target=s["target"], port=self.port, host=self.host)
        return [os.fspath(config), s["sender"], s["target"], self.date.isoformat()]

    def _call(self, request):
        with self._lock:
            if self._child is None:
                raise RuntimeError("the drop copy acceptor is not started")
            self._child.stdin.write(json.dumps(request) + "\n")
            self._child.stdin.flush()
            line = self._child.stdout.readline()
        if not line:
            raise RuntimeError(f"the drop copy acceptor exited ({self._child.poll()})")
        answer = json.loads(line)
        if "error" in answer:
            raise {"ValueError": ValueError, "TypeError": TypeError}.get(
                answer["type"], RuntimeError)(answer["error"])
        return answer

    def start(self):
        # A free port found here may be taken before the child binds it: try another.
        for _ in range(1 if self._fixed_port else 3):
            self._child = subprocess.Popen(
                [sys.executable, "-m", "tickwire.sim.dropcopy", *self._configure()],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            if self._child.stdout.readline():
                return self
            code = self._child.wait()
            self._child.stdin.close()
            self._child.stdout.close()
            self._child = None
        raise RuntimeError(f"the drop copy acceptor did not start on {self.host}:{self.port} "
                           f"(exit {code})")

    def stop(self, *, logout=True):
        """Log the initiator out (unless `logout` is false: the exchange vanishes) and end."""
        if self._child is None:
            return
        try:
            self._call({"op": "stop", "logout": logout})
        except (RuntimeError, BrokenPipeError):
            pass
        self._child.wait(timeout=10)
        self._child.stdin.close()
        self._child.stdout.close()
        self._child = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def logged_on(self):
        return self._call({"op": "status"})["logged_on"]

    @property
    def next_sender_seq(self):
        return self._call({"op": "status"})["next_sender_seq"]

    def wait_logged_on(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not self.logged_on:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no drop copy logon on port {self.port} in {timeout} s")
            time.sleep(0.01)

    def send(self, event, *, poss_resend=False):
        """Send (or, while no initiator is logged on, store for the resend) the
        ExecutionReport of `event`. ``poss_resend`` marks an application-level repeat of a
        report already sent (97=Y): same ExecID, new sequence number."""
        if not isinstance(event, OrderEvent):
            raise TypeError(f"expected an OrderEvent, got {type(event).__name__}")
        fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
        self._call({"op": "send", "event": dict(fields, kind=event.kind.value),
                    "poss_resend": poss_resend})


if __name__ == "__main__":
    _serve(sys.argv[1:])
