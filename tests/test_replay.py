"""Recorded-data replay (`tickwire replay`): readers checked against independent parsers
(itchfeed for ITCH, scapy for pcap), LOBSTER against a brute-force book written here, and the
gateware's top of book (read from its BookUpdate stream) against brute-force books fed by
itchfeed's decoding of the same file."""

import csv
import gzip
import random
import struct

import pytest
from click.testing import CliRunner
from itch.parser import MessageParser

from tickwire.host.cli import main
from tickwire.sim import itch as codec
from tickwire.sim.recorded import ReplayError, read_recording
from tickwire.sim.scenario import order_flow

SYMBOLS = ("AAPL", "MSFT")


def itch_file(path, messages):
    path.write_bytes(b"".join(len(m).to_bytes(2, "big") + m for m in messages))
    return path


@pytest.fixture(scope="module")
def flow():
    return order_flow(3000, seed=5)


# A brute-force book over itchfeed's decoded messages -------------------------------------------

def itchfeed_messages(blob):
    parser = MessageParser()
    return [parser.get_message_type(m) for m in blob]


class BruteBook:
    """Every live order by reference; the top of book recomputed from all of them."""

    def __init__(self):
        self.orders = {}      # ref -> [locate, side, price, shares]

    def apply(self, m):
        kind = m.message_type.decode()
        if kind in "AF":
            self.orders[m.order_reference_number] = [m.stock_locate,
                                                     m.buy_sell_indicator.decode(),
                                                     int(m.price), m.shares]
        elif kind == "U":
            old = self.orders.pop(m.order_reference_number)
            self.orders[m.new_order_reference_number] = [old[0], old[1], int(m.price), m.shares]
        elif kind == "D":
            del self.orders[m.order_reference_number]
        elif kind in "ECX":
            order = self.orders[m.order_reference_number]
            order[3] -= m.executed_shares if kind in "EC" else m.cancelled_shares
            if order[3] <= 0:
                del self.orders[m.order_reference_number]

    def levels(self, locate, side):
        out = {}
        for loc, s, price, shares in self.orders.values():
            if loc == locate and s == side:
                out[price] = out.get(price, 0) + shares
        return sorted(out.items(), reverse=side == "B")

    def top(self, locate):
        ask = (self.levels(locate, "S") or [(0, 0)])[0]
        bid = (self.levels(locate, "B") or [(0, 0)])[0]
        return (*ask, *bid)


def test_itchfeed_decodes_prices_as_integers():
    """The brute-force book takes itchfeed's raw Price(4) integers (its message attributes)."""
    m = itchfeed_messages([codec.encode(b"A", order_ref=1, side=b"B", shares=5, stock="X",
                                        price=1234500)])[0]
    assert int(m.price) == 1234500


# Readers ----------------------------------------------------------------------------------------

def test_itch_file_reader_matches_itchfeed(tmp_path, flow):
    path = itch_file(tmp_path / "11222026.NASDAQ_ITCH50", flow)
    with open(path, "rb") as f:
        theirs = list(MessageParser().parse_file(f))
    ours = read_recording(path)
    assert ours.kind == "itch" and ours.messages == len(theirs) == len(flow)
    assert [ours.message(i) for i in range(ours.messages)] == [m.to_bytes() for m in theirs]
    directory = {m.stock.decode().strip(): m.stock_locate for m in theirs
                 if m.message_type == b"R"}
    assert ours.directory == directory and len(directory) == 8

    gz = tmp_path / "11222026.NASDAQ_ITCH50.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    again = read_recording(gz)
    assert again.blocks == ours.blocks and again.directory == directory


def mold_payload(session, sequence, messages):
    return struct.pack(">10sQH", session, sequence, len(messages)) + b"".join(
        struct.pack(">H", len(m)) + m for m in messages)


def test_pcap_reader_against_scapy_frames(tmp_path, flow):
    from scapy.all import ARP, IP, TCP, UDP, Dot1Q, Ether, Raw, wrpcap

    messages = flow[:400]
    packets, sequence = [], 1
    for start in range(0, len(messages), 30):
        batch = messages[start:start + 30]
        packets.append(mold_payload(b"SESSION001", sequence, batch))
        sequence += len(batch)

    def feed(payload, group, vlan=False):
        head = Ether(dst="01:00:5e:36:0c:6f")
        head = head / Dot1Q(vlan=7) if vlan else head
        return head / IP(src="10.1.1.1", dst=group) / UDP(sport=5000, dport=26477) / Raw(payload)

    frames = []
    for k, payload in enumerate(packets):
        if k != 3:                                  # line A lost packet 3
            frames.append(feed(payload, "233.54.12.111", vlan=k == 5))
        if k != 4:                                  # line B lost packet 4, B's copy comes late
            frames.append(feed(payload, "233.49.196.111"))
    frames[2], frames[3] = frames[3], frames[2]     # B ahead of A once
    others = [Ether() / ARP(),
              Ether() / IP(dst="10.0.0.2") / TCP(dport=80) / Raw(b"GET /"),
              Ether() / IP(dst="233.54.12.111") / UDP(dport=26477) / Raw(b"not mold at all"),
              Ether() / IP(dst="233.54.12.111", flags="MF") / UDP(dport=26477) / Raw(packets[0])]
    frames[6:6] = others
    path = tmp_path / "capture.pcap"
    wrpcap(str(path), frames)

    ours = read_recording(path)
    assert ours.kind == "pcap"
    assert [ours.message(i) for i in range(ours.messages)] == messages
    both_lines = sum(len(messages[30 * k:30 * k + 30]) for k in range(len(packets))
                     if k not in (3, 4))
    assert ours.counts == {"frames": len(frames), "not_moldudp64": len(others),
                           "duplicates": both_lines, "missing": 0}


def test_bad_files_are_refused_clearly(tmp_path, flow):
    cut = itch_file(tmp_path / "cut.itch", flow[:50])
    cut.write_bytes(cut.read_bytes() + b"\x00")
    with pytest.raises(ReplayError, match="length prefix cut off .* truncated"):
        read_recording(cut)
    short = itch_file(tmp_path / "short.itch", flow[:50])
    short.write_bytes(short.read_bytes()[:-5])
    with pytest.raises(ReplayError, match="message 49 .* truncated"):
        read_recording(short)
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not market data\n")
    with pytest.raises(ReplayError, match="unknown file type"):
        read_recording(text)
    pcapng = tmp_path / "x.pcapng"
    pcapng.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(40))
    with pytest.raises(ReplayError, match="pcapng"):
        read_recording(pcapng)
    from scapy.all import UDP, Ether, Raw, wrpcap
    capture = tmp_path / "cut.pcap"
    wrpcap(str(capture), [Ether() / UDP() / Raw(bytes(100))] * 3)
    capture.write_bytes(capture.read_bytes()[:-5])
    with pytest.raises(ReplayError, match="cut off: the file is truncated"):
        read_recording(capture)
    lonely = tmp_path / "AAPL_2012-06-21_34200000_57600000_message_3.csv"
    lonely.write_text("34200.1,1,1,100,1000000,1\n")
    with pytest.raises(ReplayError, match="orderbook file .* is missing"):
        read_recording(lonely)


# LOBSTER ----------------------------------------------------------------------------------------

LEVELS = 3
EMPTY = 9_999_999_999


def lobster_session(seed=3, events=400):
    """A LOBSTER message/orderbook pair from a brute-force book: the book starts with six
    levels a side that no message created (only three are shown), so events on those orders
    and deletions that reveal deeper levels all occur."""
    rng = random.Random(seed)
    orders = {}                                  # id -> [side (1 buy, -1 sell), price, size]
    for k in range(6):
        for n in range(2):
            orders[90_000 + 10 * k + n] = [1, 1_000_000 - 100 * k, 100 * (n + 1)]
            orders[80_000 + 10 * k + n] = [-1, 1_000_100 + 100 * k, 100 * (n + 1)]

    def levels(side):
        out = {}
        for s, price, size in orders.values():
            if s == side:
                out[price] = out.get(price, 0) + size
        return sorted(out.items(), reverse=side == 1)

    def row():
        asks, bids = levels(-1), levels(1)
        out = []
        for k in range(LEVELS):
            out += list(asks[k]) if k < len(asks) else [EMPTY, 0]
            out += list(bids[k]) if k < len(bids) else [-EMPTY, 0]
        return out

    messages, books, next_id, sweep = [], [], 1, []
    for n in range(events):
        time = f"{34200 + n / 1000:.9f}"
        best_bid, best_ask = levels(1)[0][0], levels(-1)[0][0]
        action = rng.random()
        live = sorted(orders)
        if n % 100 == 40:            # clear the best three levels of one side: deeper ones show
            side = 1 if n % 200 == 40 else -1
            top3 = {price for price, _ in levels(side)[:3]}
            sweep = [i for i in live if orders[i][0] == side and orders[i][1] in top3]
        sweep = [i for i in sweep if i in orders]
        if sweep:
            order = sweep.pop(0)
            side, price, size = orders.pop(order)
            event = [3, order, size, price, side]
        elif n == 200:
            event = [7, 0, 0, -1, -1]
        elif n == 100:
            event = [6, 0, 400, best_bid + 50, -1]
        elif action < 0.4 or len(levels(1)) < 2 or len(levels(-1)) < 2:
            side = rng.choice((1, -1))
            price = (min(best_ask - 100, best_bid + 100 * rng.randint(-4, 1)) if side == 1
                     else max(best_bid + 100, best_ask + 100 * rng.randint(-1, 4)))
            orders[next_id] = [side, price, 10 * rng.randint(1, 20)]
            event = [1, next_id, orders[next_id][2], price, side]
            next_id += 1
        elif action < 0.55:
            order = rng.choice([i for i in live if orders[i][2] > 10] or live)
            side, price, size = orders[order]
            cut = min(size - 1, 10 * rng.randint(1, max(1, size // 20))) or size
            orders[order][2] -= cut
            event = [2, order, cut, price, side]
        elif action < 0.8:
            order = rng.choice(live)
            side, price, size = orders.pop(order)
            event = [3, order, size, price, side]
        elif action < 0.95:
            side = rng.choice((1, -1))
            best = best_bid if side == 1 else best_ask
            order = min(i for i in live if orders[i][:2] == [side, best])
            size = min(orders[order][2], 10 * rng.randint(1, 10))
            orders[order][2] -= size
            if orders[order][2] == 0:
                del orders[order]
            event = [4, order, size, best, side]
        else:
            event = [5, 0, 50, best_bid + 50, rng.choice((1, -1))]
        for o in [o for o, v in orders.items() if v[2] == 0]:
            del orders[o]
        messages.append([time] + event)
        books.append(row())
    return messages, books


def write_lobster(folder, messages, books, ticker="TEST"):
    stem = f"{ticker}_2012-06-21_34200000_57600000"
    message_path = folder / f"{stem}_message_{LEVELS}.csv"
    orderbook_path = folder / f"{stem}_orderbook_{LEVELS}.csv"
    with open(message_path, "w", newline="") as f:
        csv.writer(f).writerows(messages)
    with open(orderbook_path, "w", newline="") as f:
        csv.writer(f).writerows(books)
    return message_path, orderbook_path


def shown(row):
    """{(side, price): size} of one orderbook row, dummy levels left out."""
    out = {}
    for k in range(LEVELS):
        for side, column in (("S", 4 * k), ("B", 4 * k + 2)):
            if row[column + 1]:
                out[(side, row[column])] = row[column + 1]
    return out


def test_lobster_translation_rebuilds_the_files_book(tmp_path):
    messages, books = lobster_session()
    first = shown(books[0])
    added_first = messages[0][3] if messages[0][1] == 1 else 0
    assert sum(first.values()) > added_first, "the first row holds levels no message created"
    kinds = {e[1] for e in messages}
    assert kinds == {1, 2, 3, 4, 5, 6, 7}
    message_path, _ = write_lobster(tmp_path, messages, books)

    recording = read_recording(message_path)
    assert recording.kind == "lobster" and recording.messages == len(messages)
    assert recording.directory == {"TEST": 1}
    assert recording.book == [(r[0], r[1], r[2], r[3]) for r in books]

    # The translated ITCH messages, decoded by itchfeed, into a brute-force book: after each
    # LOBSTER message its visible levels are the orderbook file's row.
    decoded = itchfeed_messages([recording.message(i) for i in range(len(recording.offsets))])
    book, position = BruteBook(), 0
    for index, mark in enumerate(recording.marks):
        for message in decoded[position:mark + 1]:
            book.apply(message)
        position = mark + 1
        visible = {(side, price): size for side in "SB"
                   for price, size in book.levels(1, side)[:LEVELS]}
        assert visible == shown(books[index]), f"after LOBSTER message {index}"
    assert any(m.message_type == b"A" for m in decoded[:recording.marks[0]]), \
        "the starting book is materialised as synthetic orders"
    later_adds = sum(m.message_type == b"A" for m in decoded[recording.marks[0] + 1:])
    assert later_adds > sum(e[1] == 1 for e in messages[1:]), \
        "deeper levels revealed later are materialised too"


# The gateware, through the command line ---------------------------------------------------------

def run_cli(*args):
    result = CliRunner().invoke(main, ["replay", *map(str, args)])
    return result


def test_bbo_csv_against_an_independent_book(tmp_path, flow):
    path = itch_file(tmp_path / "small.itch", flow)
    out = tmp_path / "bbo.csv"
    result = run_cli(path, "--symbol", "AAPL", "--symbol", "msft", "--bbo", out)
    assert result.exit_code == 0, result.output

    with open(path, "rb") as f:
        decoded = list(MessageParser().parse_file(f))
    locates = {m.stock.decode().strip(): m.stock_locate for m in decoded
               if m.message_type == b"R"}
    book, expected = BruteBook(), []
    for index, message in enumerate(decoded):
        book.apply(message)
        for name in SYMBOLS:
            expected.append([str(index), name, *map(str, book.top(locates[name]))])
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["index", "symbol", "ask_price", "ask_size", "bid_price", "bid_size"]
    assert len(rows) - 1 == 2 * len(flow)
    assert rows[1:] == expected
    assert sum(r[2] != "0" for r in rows[1:]) > len(flow), "the books were not empty"


def test_pcap_and_itch_file_replay_alike(tmp_path, flow):
    from scapy.all import IP, UDP, Ether, Raw, wrpcap

    messages = flow[:800]
    frames, sequence = [], 1
    for start in range(0, len(messages), 25):
        batch = messages[start:start + 25]
        frames.append(Ether() / IP(dst="233.54.12.111") / UDP(dport=26477)
                      / Raw(mold_payload(b"SESSION002", sequence, batch)))
        sequence += len(batch)
    frames.insert(3, Ether() / IP(dst="10.0.0.9") / UDP(dport=53) / Raw(b"\x12\x34dns"))
    pcap = tmp_path / "feed.pcap"
    wrpcap(str(pcap), frames)
    itch_path = itch_file(tmp_path / "feed.itch", messages)
    outputs = []
    for source in (pcap, itch_path):
        out = tmp_path / f"{source.name}.csv"
        result = run_cli(source, "--symbol", "NVDA", "--bbo", out)
        assert result.exit_code == 0, result.output
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == 801
    result = run_cli(pcap, "--symbol", "NVDA")
    assert "1 frame that is not MoldUDP64 skipped" in result.output


def test_check_book_on_lobster(tmp_path):
    messages, books = lobster_session(seed=4, events=300)
    message_path, orderbook_path = write_lobster(tmp_path, messages, books)
    result = run_cli(message_path, "--check-book")
    assert result.exit_code == 0, result.output
    assert "0 mismatches" in result.output

    corrupt = [17, 120, 255]
    for index in corrupt:
        books[index][1] += 1            # level 1 ask size
    write_lobster(tmp_path, messages, books)
    out = tmp_path / "lobster.csv"
    result = run_cli(message_path, "--check-book", "--bbo", out)
    assert result.exit_code == 1
    reported = [int(line.split()[1].rstrip(":")) for line in result.output.splitlines()
                if line.startswith("message ")]
    assert reported == corrupt
    assert f"{len(corrupt)} mismatches" in result.output
    with open(out, newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert len(rows) == len(messages) and {r[1] for r in rows} == {"TEST"}


def test_command_line_errors(tmp_path, flow):
    path = itch_file(tmp_path / "f.itch", flow[:100])
    result = run_cli(path, "--symbol", "ZZZZ")
    assert result.exit_code != 0 and "no Stock Directory message names it" in result.output
    result = run_cli(path, "--check-book")
    assert result.exit_code != 0 and "only LOBSTER files carry" in result.output
    cut = tmp_path / "cut.itch"
    cut.write_bytes(path.read_bytes()[:-1])
    result = run_cli(cut)
    assert result.exit_code != 0 and "truncated" in result.output
    text = tmp_path / "x.bin"
    text.write_bytes(b"\xff" * 64)
    result = run_cli(text)
    assert result.exit_code != 0 and "unknown file type" in result.output
