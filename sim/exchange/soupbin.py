"""SoupBinTCP 3.00 packets: framing of a byte stream, the login request, the server's packets.

Section 2 of the SoupBinTCP 3.00 specification: every packet is a 2-byte big-endian packet
length that counts the bytes after itself, a 1-byte packet type, then the payload. Alpha
fields are left-justified and space padded; the ASCII numeric sequence numbers are
right-justified and space padded. Peers differ in how they pad (ouch-connect right-justifies
its username and password), so the server compares these fields with the spaces stripped.
"""

from typing import NamedTuple

__all__ = ["LOGIN_LENGTH", "LoginRequest", "PacketReader", "SoupBinError", "decode_login",
           "login_accepted", "packet"]

#: The largest packet the server accepts: a login request or an OUCH inbound message with
#: its appendages stays far below it.
MAX_PACKET_LENGTH = 1024
LOGIN_LENGTH = 6 + 10 + 10 + 20
SESSION_LENGTH = 10
SEQUENCE_LENGTH = 20


class SoupBinError(ValueError):
    pass


def packet(kind, payload=b""):
    """One packet: `kind` is the 1-byte type (b"S", b"H", ...)."""
    return (len(payload) + 1).to_bytes(2, "big") + kind + bytes(payload)


def login_accepted(session, sequence):
    return packet(b"A", session.encode("ascii").ljust(SESSION_LENGTH)
                  + str(sequence).encode().rjust(SEQUENCE_LENGTH))


class LoginRequest(NamedTuple):
    username: str
    password: str
    session: str          # "" asks for the current session
    sequence: int         # 0 asks for the next message from now on


def decode_login(payload):
    if len(payload) != LOGIN_LENGTH:
        raise SoupBinError(f"login request of {len(payload)} bytes, expected {LOGIN_LENGTH}")
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError:
        raise SoupBinError("login request is not ASCII") from None
    sequence = text[26:46].strip()
    if sequence and not sequence.isdigit():
        raise SoupBinError(f"requested sequence number {sequence!r} is not a number")
    return LoginRequest(text[0:6].strip(), text[6:16].strip(), text[16:26].strip(),
                        int(sequence or 0))


class PacketReader:
    """Cuts a TCP byte stream into (type, payload) packets, whatever the reads' boundaries."""

    def __init__(self, max_length=MAX_PACKET_LENGTH):
        self.max_length = max_length
        self._buffer = bytearray()

    def feed(self, data):
        """The packets completed by `data`; raises SoupBinError on a length of 0 or above
        the maximum (the stream cannot be resynchronised after that)."""
        self._buffer += data
        packets = []
        while len(self._buffer) >= 2:
            length = int.from_bytes(self._buffer[0:2], "big")
            if not 1 <= length <= self.max_length:
                raise SoupBinError(f"packet length {length} (allowed 1 to {self.max_length})")
            if len(self._buffer) < 2 + length:
                break
            packets.append((bytes(self._buffer[2:3]), bytes(self._buffer[3:2 + length])))
            del self._buffer[:2 + length]
        return packets

    @property
    def pending(self):
        """Bytes of a packet not complete yet."""
        return len(self._buffer)
