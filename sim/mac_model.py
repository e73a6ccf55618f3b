"""Reference model of the Ethernet MAC (IEEE 802.3 clauses 3 and 4), independent of the gateware.

The CRC is zlib's; what the MAC should put on the wire for a client frame, and what it should
deliver for bytes received on the wire.
"""

import zlib
from typing import NamedTuple

PREAMBLE = bytes([0x55] * 7 + [0xD5])
MIN_FRAME = 64
MIN_PAYLOAD = 60
MIN_IFG = 12


def fcs(frame):
    """The frame check sequence of `frame`, in wire order."""
    return zlib.crc32(frame).to_bytes(4, "little")


def tx_wire(frame):
    """The bytes the MAC sends for client frame `frame`: preamble, SFD, frame padded with zeros
    to 60 bytes, FCS."""
    padded = bytes(frame).ljust(MIN_PAYLOAD, b"\0")
    return PREAMBLE + padded + fcs(padded)


class RxFrame(NamedTuple):
    data: bytes    # what the client sees (FCS stripped)
    bad: bool
    reason: str    # "", "rx_error", "runt", "bad_fcs"


def rx_expected(after_sfd, error=False):
    """What the MAC delivers for a frame whose bytes after the SFD are `after_sfd` (FCS included),
    `error` if the PHY signalled an error inside it; None when nothing is delivered."""
    after_sfd = bytes(after_sfd)
    if error:
        reason = "rx_error"
    elif len(after_sfd) < MIN_FRAME:
        reason = "runt"
    elif fcs(after_sfd[:-4]) != after_sfd[-4:]:
        reason = "bad_fcs"
    else:
        reason = ""
    if len(after_sfd) <= 4:
        return RxFrame(b"", True, reason) if reason else None
    return RxFrame(after_sfd[:-4], bool(reason), reason)


def frames_from_beats(beats):
    """Join MacBeat dicts (data, keep, first, last, bad) into frames: [(bytes, bad)]. Checks the
    beat framing (first on the first beat only, keep contiguous and full but on the last)."""
    frames, current = [], None
    for beat in beats:
        keep = beat["keep"]
        assert keep and keep & (keep + 1) == 0, f"keep not contiguous from lane 0: {keep:#x}"
        if beat["first"]:
            assert current is None, "first inside a frame"
            current = bytearray()
        assert current is not None, "a beat outside a frame"
        if not beat["last"]:
            assert keep == 0xFF, "a partial beat before the last"
            assert not beat["bad"], "bad before the last beat"
        current += beat["data"].to_bytes(8, "little")[:keep.bit_length()]
        if beat["last"]:
            frames.append((bytes(current), bool(beat["bad"])))
            current = None
    return frames


def beats_of(frame, width=8):
    """A client frame as MacBeat dicts."""
    out = []
    for start in range(0, len(frame), width):
        chunk = frame[start:start + width]
        out.append({"data": int.from_bytes(chunk, "little"), "keep": (1 << len(chunk)) - 1,
                    "first": start == 0, "last": start + width >= len(frame), "bad": False})
    return out


def split_wire(cycles):
    """Frames seen on a GMII transmit interface, from per-cycle (byte, en, er) samples:
    [(bytes with preamble, error flag, first cycle index, last cycle index)]."""
    frames, current = [], None
    for index, (byte, en, er) in enumerate(cycles):
        if en:
            if current is None:
                current = [bytearray(), False, index, index]
            current[0].append(byte)
            current[1] |= bool(er)
            current[3] = index
        elif current is not None:
            frames.append(current)
            current = None
    if current is not None:
        frames.append(current)
    return [(bytes(data), error, start, end) for data, error, start, end in frames]
