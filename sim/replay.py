"""Replaying frames through the Verilated feed path and summarising what it decoded."""

import time
from collections import Counter
from typing import NamedTuple

from tickwire.hdl.feed.events import NoticeKind

from .verilated_feed import VerilatedFeedHandler


class Summary(NamedTuple):
    frames: int
    messages_offered: int
    run: object            # FeedRun
    seconds: float         # wall time of the simulation proper

    @property
    def latency(self):
        values = sorted(v for v in self.run.latencies if v is not None)
        if not values:
            return {}
        return {"min": values[0], "median": values[len(values) // 2],
                "p99": values[min(len(values) - 1, (99 * len(values)) // 100)],
                "max": values[-1], "count": len(values)}

    @property
    def gaps(self):
        return [n for n in self.run.notices if n["kind"] == NoticeKind.GAP.value]

    def message_types(self):
        return Counter({name.removeprefix("type_").removesuffix("_lower"): n
                        for name, n in self.run.counters["itch"].items()
                        if name.startswith("type_") and n})

    def drops(self):
        """Every counter of something lost or refused, by name (zeros left out). Duplicates and
        line B's copy of the end-of-session packet (`after_end`) are arbitration, not loss."""
        refused = {"udp": ("truncated", "bad_frames", "ip_header_errors", "ip_checksum_errors",
                           "ip_fragments", "udp_length_errors"),
                   "mold": ("wrong_session", "truncated", "bad_length",
                            "count_mismatch", "corrupt"),
                   "itch": ("unknown", "bad_message")}
        out = {f"{group}.{name}": self.run.counters[group][name]
               for group, names in refused.items() for name in names
               if self.run.counters[group][name]}
        if self.run.counters["notice_overflow"]:
            out["notice_overflow"] = self.run.counters["notice_overflow"]
        return out


def replay(frames, filters, *, messages_offered=0, feed=None):
    feed = feed or VerilatedFeedHandler()
    feed.configure(filters)
    started = time.perf_counter()
    run = feed.run(frames)
    return Summary(len(frames), messages_offered, run, time.perf_counter() - started)
