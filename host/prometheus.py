"""A Prometheus exporter of a tickwire device: every counter, alarm and numeric status register
of the register map, and the design identity (`prometheus_client` custom collector).

    import asyncio
    from tickwire.host.api import connect
    from tickwire.host.prometheus import serve

    async def main():
        device = await connect("udp://10.0.0.2:7000")
        server = serve(device, 9464)                 # http://127.0.0.1:9464/metrics
        while True:
            await server.exporter.refresh()          # one sample of the device
            await asyncio.sleep(5)

    asyncio.run(main())

**One sample per refresh, not per scrape.** The exporter reads the device only when it is
refreshed (`Exporter.refresh`, or `Exporter.update` with a ``Device.status()`` the caller has
read, which is what ``tickwire watch --prometheus`` does once per ``--interval``); a scrape
serves the latest sample. So every metric of one exposition comes from one sample (the
counters from one snapshot of their groups, taken in one cycle by the gateware), the device
is accessed from one place only (the event loop that owns it, never from the HTTP server's
threads, whatever the transport) and at a rate the host chooses, not at the rate of however
many scrapers there are. ``tickwire_last_sample_timestamp_seconds`` tells how old it is.

Names are derived from the register map, never listed by hand:

- counter ``feed.counters.udp.frames`` -> counter ``tickwire_feed_udp_frames_total`` (the
  ``counters`` component dropped); the ITCH message type counters ``<group>.type_<T>``
  (``type_<t>_lower`` for a lower-case type) -> ``tickwire_<group>_messages_total{type="T"}``.
  Counters are the gateware's 32-bit wrapping counters, exported as read: a wrap looks like a
  counter reset to Prometheus, which ``rate()`` and ``increase()`` handle (losing at most one
  sample interval's counts per wrap).
- status register whose fields are all single bits (``feed.alarms``) -> gauge
  ``tickwire_feed_alarms{alarm="gap"}`` 0 or 1 per field;
- other status registers -> gauges (a table entry labelled by its index, by ``feed`` for the
  per-feed ``feed.next_sequence``: ``tickwire_feed_next_sequence{feed="0"}``; a field of a
  multi-bit structured register -> ``tickwire_<register>_<field>``);
- the design identity -> info ``tickwire_design_info{identity="<16 hex digits>"}``;
- a latency histogram (`tickwire.host.device.HISTOGRAM_BINS_SUFFIX`: ``order.histogram.*``
  counters with their edges in ``order.histogram_bins``) -> histogram
  ``tickwire_order_latency_cycles`` with a bucket ``le`` per bin edge (latencies are whole
  cycles: ``le`` is the bin's last value), ``+Inf``, and ``_sum`` from ``order.latency.sum``.
  The gateware's histogram and statistics are cleared together (``order.clear_latency``); a
  bin counter wraps at 2**32 like the other counters.

Help texts are the register map's descriptions. FIFOs are not exported (reading pops them);
their losses are counters (``tickwire_feed_notice_overflow_total``).
"""

import re
import socket
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)

from .device import HISTOGRAM_BINS_SUFFIX

NAMESPACE = "tickwire"

#: The label of a status table's entry index, where it has a meaning (default ``index``).
TABLE_LABELS = {"feed.next_sequence": "feed"}

_TYPE_COUNTER = re.compile(r"type_(?P<type>[A-Za-z])(?P<lower>_lower)?")


def _metric(parts):
    name = "_".join([NAMESPACE, *parts])
    name = re.sub(r"[^a-zA-Z0-9_:]", "_", name)
    return name


def counter_metric(register_name):
    """``(metric name without _total, {label: value})`` of a counter register."""
    parts = [p for p in register_name.split(".") if p != "counters"]
    match = _TYPE_COUNTER.fullmatch(parts[-1])
    if match:
        letter = match["type"].lower() if match["lower"] else match["type"]
        return _metric([*parts[:-1], "messages"]), {"type": letter}
    return _metric(parts), {}


def status_metric(register_name, counter_names=()):
    """The gauge name of a status register: ``_state`` is appended when a counter of the
    same block has its name (``risk.killed``, the kill switch, beside the counter of intents
    rejected because of it, ``risk.counters.killed``)."""
    name = _metric(register_name.split("."))
    return f"{name}_state" if name in counter_names else name


class Exporter:
    """A `prometheus_client` collector of a `tickwire.host.device.Device`.

    `refresh` (async) reads a sample of the device; `update` takes one read by the caller (a
    ``Device.status()`` dict); `collect` yields the latest sample's metrics and never touches
    the device, so it is safe from the HTTP server's threads."""

    def __init__(self, device):
        self.device = device
        self.map = device.map
        self._sample = None          # (number, unix time, status): replaced, never mutated
        self._collected = 0          # the number of the latest sample a scrape has collected
        self._families = self._plan()
        # {block: its bin counters in map order: below, bin0, ..., above}
        self._histograms = {
            block: [c.name for c in self.map
                    if c.kind == "counter" and c.name.startswith(f"{block}.histogram.")]
            for block in (r.name.removesuffix(HISTOGRAM_BINS_SUFFIX) for r in self.map
                          if r.kind == "config" and r.name.endswith(HISTOGRAM_BINS_SUFFIX))}

    def _plan(self):
        """[(metric name, kind, help, [registers])] of the map; refuses two registers that
        would export one name (but for the members of a labelled counter family)."""
        families = {}
        counters = {counter_metric(r.name)[0] for r in self.map if r.kind == "counter"}
        for r in self.map:
            if r.kind == "counter":
                (name, labels), kind = counter_metric(r.name), "counter"
            elif r.kind == "status":
                (name, labels), kind = (status_metric(r.name, counters), {}), "gauge"
            else:
                continue
            if name in families:
                first = families[name][3][0]
                if not labels or counter_metric(first.name)[1].keys() != labels.keys():
                    raise ValueError(f"{r.name} and {first.name} would both "
                                     f"export {name}")
                families[name][3].append(r)
                continue
            help_text = f"{r.doc} ({r.name})" if r.doc else r.name
            if labels:
                help_text = (f"{r.doc}, by ITCH message type "
                             f"({r.name.rsplit('.', 1)[0]}.type_*)")
            families[name] = (name, kind, help_text, [r])
        return list(families.values())

    async def refresh(self):
        """Read one sample of the device (its counters from one snapshot) and serve it."""
        self.update(await self.device.status())

    def update(self, status, at=None):
        """Serve `status` (a ``Device.status()`` dict) from now on; `at`: when it was read
        (unix seconds, default now)."""
        number = self._sample[0] + 1 if self._sample else 1
        self._sample = (number, time.time() if at is None else at, status)

    @property
    def samples(self):
        """How many samples have been served so far."""
        return self._sample[0] if self._sample else 0

    def collected(self, number=None):
        """Whether a scrape has collected sample `number` (default: the latest) or a later one."""
        return self._collected >= (self.samples if number is None else number) > 0

    def describe(self):
        """The metric families (without samples), so that a registry refuses duplicates."""
        for name, kind, help_text, _ in self._families:
            yield (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                name, help_text)
        for block in self._histograms:
            yield HistogramMetricFamily(*self._histogram_name(block))
        yield from self._own_families(None)

    @staticmethod
    def _histogram_name(block):
        return (_metric([*block.split("."), "latency", "cycles"]),
                f"latency in cycles, trigger at rx to order at tx ({block}.histogram)")

    def _own_families(self, sample):
        samples = CounterMetricFamily(f"{NAMESPACE}_samples",
                                      "samples of the device read by the exporter")
        stamp = GaugeMetricFamily(f"{NAMESPACE}_last_sample_timestamp_seconds",
                                  "unix time of the sample being served")
        design = InfoMetricFamily(f"{NAMESPACE}_design",
                                  "design identity of the device: a hash of its gateware's "
                                  "build (id.identity)")
        samples.add_metric([], sample[0] if sample else 0)
        if sample is not None:
            stamp.add_metric([], sample[1])
        identity = getattr(self.device, "identity", None)
        if identity is not None:
            design.add_metric([], {"identity": f"{identity:016x}"})
        return [samples, stamp, design]

    def collect(self):
        sample = self._sample
        yield from self._own_families(sample)
        if sample is None:
            return
        status = sample[2]
        for name, kind, help_text, registers in self._families:
            if kind == "counter":
                yield from self._counters(name, help_text, registers, status["counters"])
            else:
                r = registers[0]
                yield from self._status(name, help_text, r, status["status"].get(r.name))
        for block in self._histograms:
            bins = status.get("histogram_bins", {}).get(block + HISTOGRAM_BINS_SUFFIX)
            if bins is not None:
                yield self._histogram(block, bins, status)
        self._collected = max(self._collected, sample[0])

    def _histogram(self, block, bins, status):
        counts = [status["counters"].get(n, 0) for n in self._histograms[block]]
        edges = [bins["base"] + (k << bins["shift"]) - 1 for k in range(len(counts) - 1)]
        buckets, total = [], 0
        for edge, value in zip([*edges, "+Inf"], counts, strict=True):
            total += value
            buckets.append((edge if edge == "+Inf" else str(float(edge)), total))
        latency = status["status"].get(f"{block}.latency") or {}
        return HistogramMetricFamily(*self._histogram_name(block), buckets=buckets,
                                     sum_value=latency.get("sum", 0))

    def _counters(self, name, help_text, registers, counters):
        labels = list(counter_metric(registers[0].name)[1])
        family = CounterMetricFamily(name, help_text, labels=labels)
        for r in registers:
            if r.name in counters:
                family.add_metric(list(counter_metric(r.name)[1].values()), counters[r.name])
        yield family

    def _status(self, name, help_text, register, value):
        if value is None:
            return
        entries = value if register.depth > 1 else [value]
        index_label = TABLE_LABELS.get(register.name, "index")
        index = [index_label] if register.depth > 1 else []
        if register.fields and all(f.width == 1 for f in register.fields):
            family = GaugeMetricFamily(name, help_text, labels=[*index, "alarm"])
            for i, entry in enumerate(entries):
                for field, bit in entry.items():
                    family.add_metric([str(i)][:len(index)] + [field], bit)
            yield family
        elif register.fields:
            for field in register.fields:
                family = GaugeMetricFamily(f"{name}_{field.name}",
                                           f"{help_text}: field {field.name}", labels=index)
                for i, entry in enumerate(entries):
                    family.add_metric([str(i)][:len(index)], entry[field.name])
                yield family
        else:
            family = GaugeMetricFamily(name, help_text, labels=index)
            for i, entry in enumerate(entries):
                family.add_metric([str(i)][:len(index)], entry)
            yield family


class _Handler(WSGIRequestHandler):
    timeout = 30        # a client that stops reading does not hold a thread for ever

    def log_message(self, format, *args):
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """One thread per request (as `prometheus_client.start_http_server`), counting requests in
    flight so that `close` lets them finish."""
    daemon_threads = True

    def __init__(self, *args, **kwargs):
        self.active = 0
        self.idle = threading.Condition()
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        with self.idle:
            self.active += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._finished()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._finished()

    def _finished(self):
        with self.idle:
            self.active -= 1
            self.idle.notify_all()


class Server:
    """The exposition server started by `serve`: ``exporter``, ``registry``, ``address``,
    ``port`` (the one bound: useful with port 0), ``url``, `close`."""

    def __init__(self, exporter, registry, httpd, thread):
        self.exporter, self.registry, self._httpd, self._thread = exporter, registry, httpd, thread
        self.address, self.port = httpd.server_address[:2]

    @property
    def url(self):
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/metrics"

    def close(self, grace=5.0):
        """Stop accepting scrapes, let those in flight finish (up to `grace` seconds), close."""
        self._httpd.shutdown()
        with self._httpd.idle:
            self._httpd.idle.wait_for(lambda: self._httpd.active == 0, timeout=grace)
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def serve(device, port, addr="127.0.0.1", *, exporter=None):
    """Serve the metrics of `device` (through `exporter`, by default a new `Exporter`) over
    HTTP on `addr`:`port` (loopback by default; port 0 picks a free port) from a daemon thread,
    at ``/metrics`` (and any other path, as `prometheus_client` does). Returns a `Server`.
    The caller refreshes the exporter (`Exporter.refresh` or `Exporter.update`)."""
    exporter = exporter or Exporter(device)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(exporter)
    family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM,
                                flags=socket.AI_PASSIVE)[0][0]
    server_class = type("Server", (_ThreadingServer,), {"address_family": family})
    httpd = make_server(addr, port, make_wsgi_app(registry), server_class,
                        handler_class=_Handler)
    thread = threading.Thread(target=httpd.serve_forever, name="tickwire-prometheus",
                              daemon=True)
    thread.start()
    return Server(exporter, registry, httpd, thread)
