"""Loading a bitstream onto a board with openFPGALoader (not a Python package: install it from
your distribution, e.g. ``apt-get install openfpgaloader``)."""

import shutil
import subprocess
from pathlib import Path

#: openFPGALoader's board names.
BOARDS = {"ecpix5": "ecpix5", "arty": "arty_a7_35t"}
TOOL = "openFPGALoader"


class FlashError(RuntimeError):
    pass


def flash_command(board, bitstream, *, to_flash=False):
    """The openFPGALoader command that loads `bitstream` (SRAM, lost at power off; with
    `to_flash`, written to the configuration flash)."""
    if board not in BOARDS:
        raise FlashError(f"unknown board {board!r}: {', '.join(BOARDS)}")
    path = Path(bitstream)
    if not path.is_file():
        raise FlashError(f"no bitstream at {path}")
    return [TOOL, "--board", BOARDS[board], *(["--write-flash"] if to_flash else []), str(path)]


def flash(board, bitstream, *, to_flash=False, run=subprocess.run):
    command = flash_command(board, bitstream, to_flash=to_flash)
    if shutil.which(TOOL) is None:
        raise FlashError(f"{TOOL} not found on PATH: install it (apt-get install openfpgaloader, "
                         f"or from its releases); the command would be: {' '.join(command)}")
    result = run(command, capture_output=True, text=True)
    if result.returncode:
        output = (result.stdout + result.stderr).strip()[-2000:]
        raise FlashError(f"{TOOL} failed (exit {result.returncode}): is the board connected and "
                         f"its USB cable accessible (udev rules)?\n{output}")
    return command
