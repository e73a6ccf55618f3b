"""`ControlResponder` as the bus master of a real `RegisterBank` holding its own registers (a
board without PCIe): the token is write-only and can be changed over the channel itself, the
counters are read through their snapshot, the board's address can be moved."""

from types import SimpleNamespace

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tickwire.hdl.counters import counter_layout
from tickwire.hdl.net.control import (
    CONTROL_COUNTERS,
    CONTROL_REGISTERS,
    ControlResponder,
    control_signature,
)
from tickwire.hdl.net.mac import mac_rx_signature, mac_tx_signature
from tickwire.hdl.platform.registers import (
    MAGIC,
    Block,
    RegisterBank,
    RegisterMap,
    connect_bank,
)
from tickwire.host.udp_control import READ, WRITE, Operation, decode, encode
from tickwire.sim.control_run import Board, Frame, request_frame, run_control

BOARD = Board(mac=0x02AABBCCDDEE, ip=0x0A000002, port=7000, host_ip=0x0A000001,
              token=bytes(range(16)))


def control_map(board=BOARD):
    """The map of a board whose only block is the responder; the responder's bus is as wide
    as the map (its ports' shapes do not depend on it, so a first instance sizes the map)."""
    stand_in = SimpleNamespace(signature=control_signature(24))
    width = RegisterMap([Block("control", stand_in, CONTROL_REGISTERS)]).address_width
    responder = ControlResponder(width, mac=board.mac, ip=board.ip, port=board.port,
                                 host_ip=board.host_ip, token=board.token)
    return responder, RegisterMap([Block("control", responder, CONTROL_REGISTERS)])


class ControlledBoard(wiring.Component):
    rx: In(mac_rx_signature())
    tx: Out(mac_tx_signature())
    counters: Out(counter_layout(CONTROL_COUNTERS))

    def __init__(self):
        self.responder, self.map = control_map()
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.responder = responder = self.responder
        m.submodules.bank = bank = RegisterBank(self.map)
        wiring.connect(m, responder.bus, bank.bus)
        connect_bank(m, bank, self.map)
        wiring.connect(m, wiring.flipped(self.rx), responder.rx)
        wiring.connect(m, responder.tx, wiring.flipped(self.tx))
        m.d.comb += self.counters.eq(responder.counters)
        return m


def token_words(token):
    value = int.from_bytes(token, "big")
    return [(value >> (32 * k)) & 0xFFFFFFFF for k in range(4)]


def test_the_channel_reads_writes_and_rotates_its_own_token():
    dut = ControlledBoard()
    regs = dut.map
    token_at = regs["control.token"].address
    new_token = bytes(range(50, 66))
    snapshot = regs["control.counters.snapshot"].address
    counter_at = {name: regs[f"control.counters.{name}"].address for name in CONTROL_COUNTERS}
    requests = [
        # 1: the map's magic word, the token's words (write-only: 0), the port word
        (BOARD.token, 1, [Operation(READ, 0)] + [Operation(READ, token_at + k) for k in range(4)]
         + [Operation(READ, regs["control.control_port"].address)]),
        # 2: a wrong token: dropped
        (new_token, 2, [Operation(WRITE, regs["control.host_ip"].address, 5)]),
        # 3: rotate the token (the last word commits it), then snapshot and read the counters
        (BOARD.token, 3, [Operation(WRITE, token_at + k, w)
                          for k, w in enumerate(token_words(new_token))]
         + [Operation(WRITE, snapshot, 1)]
         + [Operation(READ, counter_at[name]) for name in CONTROL_COUNTERS]),
        # 4: the old token no longer works
        (BOARD.token, 4, [Operation(READ, 0)]),
        # 5: the new one does
        (new_token, 5, [Operation(READ, token_at)]),
    ]
    answered = [1, 1, 2, 2, 3]          # replies expected after each request
    frames = [Frame(request_frame(encode(request_id, ops, token), BOARD), idle_after=40,
                    wait_replies=waited)
              for (token, request_id, ops), waited in zip(requests, answered, strict=True)]
    run = run_control(dut, frames)
    assert len(run.replies) == 3
    replies = [decode(r[42:])[2] for r in run.replies]
    assert [r.data for r in replies[0]] == [MAGIC, 0, 0, 0, 0, 0]  # config 0: build default
    counters = dict(zip(CONTROL_COUNTERS, [r.data for r in replies[1][5:]], strict=True))
    assert counters == dict.fromkeys(CONTROL_COUNTERS, 0) | {"accepted": 1, "bad_token": 1}
    assert [r.data for r in replies[2]] == [0]
    assert run.counters == dict.fromkeys(CONTROL_COUNTERS, 0) | {"accepted": 3, "bad_token": 2}


def test_moving_the_board_address_over_the_channel():
    dut = ControlledBoard()
    regs = dut.map
    new_ip, new_port = 0x0A000063, 7777
    moved = BOARD._replace(ip=new_ip, port=new_port)
    ops = [Operation(WRITE, regs["control.board_ip"].address, new_ip),
           Operation(WRITE, regs["control.control_port"].address, new_port)]
    frames = [Frame(request_frame(encode(1, ops, BOARD.token), BOARD), wait_replies=1),
              Frame(request_frame(encode(2, [Operation(READ, 0)], BOARD.token), BOARD),
                    idle_after=60),                             # the old address: ignored
              Frame(request_frame(encode(3, [Operation(READ, 0)], BOARD.token), moved),
                    wait_replies=2)]
    run = run_control(dut, frames)
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    first, second = (Ether(r) for r in run.replies)
    # The reply to the request that moved the board still comes from where it was asked.
    assert (first[IP].src, first[UDP].sport) == ("10.0.0.2", 7000)
    assert (second[IP].src, second[UDP].sport) == ("10.0.0.99", 7777)
    assert run.counters["accepted"] == 2 and sum(run.counters.values()) == 2
