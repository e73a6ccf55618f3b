"""The host end of the FIX 4.4 drop copy: a QuickFIX initiator that keeps every
ExecutionReport (35=8) once, by ExecID, in an `ExecutionStore` (SQLite).

    store = ExecutionStore("run/executions.sqlite")
    client = DropCopyClient("run/fix", store, port=9878, on_report=positions_queue.put)
    client.start()
    ...
    client.stop()

QuickFIX keeps the session: Logon, heartbeats and TestRequests, sequence numbers in a
FileStore under the work directory (a restarted host continues the session), a ResendRequest
on a sequence gap, PossDup (43=Y) replays below the expected sequence number dropped, and a
reconnect every `reconnect` seconds after a drop. A report is committed to the store inside
QuickFIX's callback, before QuickFIX counts its sequence number as received: a host stopped in
between has it resent and the ExecID keeps it from counting twice, so nothing is lost and
nothing is counted twice, whether the repeat is a PossDup resend or an application-level
PossResend (97=Y). A report the store fails to commit is asked for again (the expected
sequence number is wound back to it, and the gap brings a resend).
"""

import dataclasses
import os
import sqlite3
import sysconfig
import threading
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path

import quickfix as fix

__all__ = ["DropCopyClient", "ExecutionReport", "parse_price", "session_settings"]

BEGIN_STRING = "FIX.4.4"


def fix_dictionary():
    """The FIX 4.4 data dictionary shipped with quickfix-py."""
    path = Path(sysconfig.get_path("data")) / "share" / "quickfix" / "FIX44.xml"
    if not path.exists():
        raise FileNotFoundError(f"{path}: quickfix-py's FIX44.xml is missing")
    return path


def session_settings(directory, connection, *, sender, target, port, heartbeat=30,
                     reconnect=5, host="127.0.0.1"):
    """A QuickFIX settings file for one FIX 4.4 session under `directory` (store and logs
    there too); returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["[DEFAULT]", f"ConnectionType={connection}",
             f"FileStorePath={directory / 'store'}", f"FileLogPath={directory / 'log'}",
             "StartTime=00:00:00", "EndTime=00:00:00", "UseDataDictionary=Y",
             f"DataDictionary={fix_dictionary()}", "ResetOnLogon=N", "ResetOnLogout=N",
             "ResetOnDisconnect=N", "PersistMessages=Y", "TimestampPrecision=6",
             "[SESSION]", f"BeginString={BEGIN_STRING}", f"SenderCompID={sender}",
             f"TargetCompID={target}"]
    if connection == "acceptor":
        lines += [f"SocketAcceptAddress={host}", f"SocketAcceptPort={port}"]
    else:
        lines += [f"SocketConnectHost={host}", f"SocketConnectPort={port}",
                  f"HeartBtInt={heartbeat}", f"ReconnectInterval={reconnect}"]
    path = directory / f"{connection}.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


def parse_price(text, tag=44):
    """A FIX decimal price as an integer with 4 implied decimals; more decimals are refused."""
    try:
        value = Decimal(text).scaleb(4)
    except InvalidOperation:
        raise ValueError(f"tag {tag}: {text!r} is not a price") from None
    if value != value.to_integral_value() or value < 0:
        raise ValueError(f"tag {tag}: {text!r} is not a price with at most 4 decimals")
    return int(value)


@dataclasses.dataclass(frozen=True)
class ExecutionReport:
    """One drop copy report as the host keeps it; prices are integers with 4 implied
    decimals (like OUCH), ``avg_px`` stays FIX text."""
    exec_id: str
    cl_ord_id: str
    order_id: str
    exec_type: str          # 150: "0" new, "4" canceled, "8" rejected, "F" trade
    ord_status: str         # 39
    symbol: str
    side: str               # 54: "1" buy, "2" sell, "5" sell short, "6" short exempt
    order_qty: int
    price: int
    last_qty: int
    last_px: int
    cum_qty: int
    leaves_qty: int
    avg_px: str
    transact_time: str
    match_id: str = ""      # 527 SecondaryExecID: the match number of a trade
    text: str = ""          # 58
    poss_dup: bool = False      # 43=Y: a session-level resend
    poss_resend: bool = False   # 97=Y: an application-level repeat
    seq_num: int = 0

    @property
    def is_buy(self):
        return self.side == "1"

    @classmethod
    def from_fix(cls, message):
        """The report in a `quickfix.Message` ExecutionReport; a missing required field is a
        ValueError naming its tag."""
        header = message.getHeader()

        def get(tag, default=None, source=message):
            if source.isSetField(tag):
                return source.getField(tag)
            if default is None:
                raise ValueError(f"ExecutionReport without tag {tag}")
            return default

        def number(tag, default=None):
            text = get(tag, default)
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"tag {tag}: {text!r} is not a whole quantity") from None

        return cls(
            exec_id=get(17), cl_ord_id=get(11), order_id=get(37), exec_type=get(150),
            ord_status=get(39), symbol=get(55), side=get(54), order_qty=number(38),
            price=parse_price(get(44, "0"), 44), last_qty=number(32, "0"),
            last_px=parse_price(get(31, "0"), 31), cum_qty=number(14), leaves_qty=number(151),
            avg_px=get(6), transact_time=get(60, ""), match_id=get(527, ""), text=get(58, ""),
            poss_dup=get(43, "N", header) == "Y", poss_resend=get(97, "N", header) == "Y",
            seq_num=int(get(34, "0", header)))


class _Application(fix.Application):
    def __init__(self, client):
        super().__init__()
        self.client = client

    def onCreate(self, session_id):
        pass

    def onLogon(self, session_id):
        self.client._logged_on.set()
        self.client._count("logons")

    def onLogout(self, session_id):
        self.client._logged_on.clear()

    SENT = {"1": "test_requests_sent", "2": "resend_requests_sent", "3": "rejects_sent"}
    RECEIVED = {"0": "heartbeats_received", "1": "test_requests_received",
                "4": "sequence_resets"}

    def toAdmin(self, message, session_id):
        name = self.SENT.get(message.getHeader().getField(35))
        if name:
            self.client._count(name)

    def fromAdmin(self, message, session_id):
        name = self.RECEIVED.get(message.getHeader().getField(35))
        if name:
            self.client._count(name)

    def toApp(self, message, session_id):
        pass

    def fromApp(self, message, session_id):
        # Runs in QuickFIX's thread; an exception must not escape into the C++ engine.
        try:
            if message.getHeader().getField(35) != "8":
                self.client._count("ignored")
                return
            self.client._receive(ExecutionReport.from_fix(message))
        except Exception as error:      # noqa: BLE001 - recorded, the session goes on
            self.client.errors.append(repr(error))


class DropCopyClient:
    """The drop copy initiator: connects to `host`:`port` as SenderCompID `sender` to
    TargetCompID `target`, sends heartbeats every `heartbeat` seconds and reconnects every
    `reconnect` seconds after a drop. Each new report (its ExecID not yet in `store`) is
    committed to the store, then given to ``on_report(report)`` (from QuickFIX's thread).
    ``stats`` counts reports (new), duplicates, PossDup and PossResend arrivals, logons,
    session messages sent and received (a Reject sent: a report QuickFIX refused), and
    ``restarts`` of the initiator by the reconnect watchdog (`_watch`)."""

    def __init__(self, directory, store, *, port, host="127.0.0.1", sender="TICKWIRE",
                 target="TWEXCH", heartbeat=30, reconnect=5, on_report=None):
        self.store = store
        self.on_report = on_report
        self.session_id = fix.SessionID(BEGIN_STRING, sender, target)
        self._config = session_settings(directory, "initiator", sender=sender, target=target,
                                        port=port, host=host, heartbeat=heartbeat,
                                        reconnect=reconnect)
        self._application = _Application(self)
        self.reconnect = reconnect
        self._initiator = self._engine = self._watchdog = self._rewind_to = None
        self._logged_on = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._engine_lock = threading.Lock()
        self.stats = dict.fromkeys(
            ("reports", "duplicates", "poss_dup", "poss_resend", "logons", "ignored",
             "restarts", "store_failures", *_Application.SENT.values(),
             *_Application.RECEIVED.values()), 0)
        self.errors = []

    def _count(self, name):
        with self._lock:
            self.stats[name] += 1

    def _receive(self, report):
        if report.poss_dup:
            self._count("poss_dup")
        if report.poss_resend:
            self._count("poss_resend")
        try:
            added = self.store.add(report)
        except sqlite3.Error as error:
            # QuickFIX counts this sequence number received once we return: the watchdog
            # winds the expected number back so the gap brings the report again.
            self.errors.append(f"{report.exec_id}: store failed: {error!r}")
            self._count("store_failures")
            with self._lock:
                self._rewind_to = min(self._rewind_to or report.seq_num, report.seq_num)
            return
        if not added:
            self._count("duplicates")
            return
        self._count("reports")
        if self.on_report is not None:
            self.on_report(report)

    def start(self):
        with self._engine_lock:
            self._start_engine()
            self._stopping.clear()
        self._watchdog = threading.Thread(target=self._watch, name="dropcopy-watchdog",
                                          daemon=True)
        self._watchdog.start()
        return self

    def _start_engine(self):
        # The SWIG objects are kept: QuickFIX holds bare pointers to them.
        settings = fix.SessionSettings(os.fspath(self._config))
        self._engine = (settings, fix.FileStoreFactory(settings), fix.FileLogFactory(settings))
        self._initiator = fix.SocketInitiator(self._application, self._engine[1], settings,
                                              self._engine[2])
        self._initiator.start()

    def _stop_engine(self):
        self._initiator.stop(True)      # QuickFIX's graceful stop polls once a second
        self._initiator = self._engine = None
        self._logged_on.clear()

    def _watch(self):
        """quickfix-py 0.0.3's SocketInitiator may never reconnect once the exchange has
        dropped the connection (its onDisconnect is not called: QuickFIX issue #741); a
        session down for a reconnect interval gets a new initiator on the same FileStore,
        which logs on with the persisted sequence numbers."""
        down_since = None
        while not self._stopping.wait(0.05):
            with self._lock:
                rewind, self._rewind_to = self._rewind_to, None
            if rewind:
                with self._engine_lock:
                    fix.Session.lookupSession(self.session_id).setNextTargetMsgSeqNum(rewind)
            if self.logged_on:
                down_since = None
                continue
            now = time.monotonic()
            if down_since is None:
                down_since = now
            elif now - down_since >= self.reconnect:
                with self._engine_lock:
                    if self._stopping.is_set():
                        return
                    self._stop_engine()
                    self._start_engine()
                self._count("restarts")
                down_since = time.monotonic()

    def stop(self, *, logout=True, timeout=2.0):
        """Log out (unless `logout` is false: a crash, as the exchange sees it) and stop."""
        self._stopping.set()
        with self._engine_lock:
            if self._initiator is None:
                return
            if logout and self.logged_on:
                fix.Session.lookupSession(self.session_id).logout()
                deadline = time.monotonic() + timeout
                while self.logged_on and time.monotonic() < deadline:
                    time.sleep(0.005)
            self._stop_engine()
        self._watchdog.join()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def logged_on(self):
        return self._logged_on.is_set()

    def wait_logged_on(self, timeout=10.0):
        if not self._logged_on.wait(timeout):
            raise TimeoutError(f"the drop copy session did not log on in {timeout} s")

    @property
    def next_target_seq(self):
        """The next MsgSeqNum expected from the exchange (persisted in the FileStore)."""
        return fix.Session.lookupSession(self.session_id).getExpectedTargetNum()
