"""A bitstream's manifest: what was built, for which board, and how it timed.

``manifest.json`` beside the bitstream::

    {"format": 1, "board": "ecpix5", "identity": "<16 hex digits>",
     "identity_scheme": "...", "parameters": {...}, "core_clock_mhz": 62.5,
     "bitstream": {"file": "tickwire.bit", "sha256": "..."},
     "fmax": {clock: {"achieved_mhz", "constraint_mhz"}}, "utilisation": {bel: {...}},
     "tools": {package: version}, "build_seconds": ..., "seed": 1}

The host reads it to know which design identity a board must report before it is armed
(`expected_identity`), and which register map the board has (``registers.json`` beside it).
"""

import hashlib
import json
from pathlib import Path

FORMAT = 1
IDENTITY_SCHEME = ("BLAKE2b-64 digest (amaranth BuildPlan.digest(8)) of the build plan "
                   "prepared with identity 0; the built plan carries it (tickwire.bitstreams.plan)")


class ManifestError(ValueError):
    pass


def write_manifest(path, *, board, parameters, identity, bitstream, timing, core_clock_mhz,
                   tools, build_seconds, seed, token_sha256=None):
    bitstream = Path(bitstream)
    manifest = {
        "format": FORMAT, "board": board, "identity": f"{identity:016x}",
        "identity_scheme": IDENTITY_SCHEME, "parameters": dict(parameters),
        "core_clock_mhz": core_clock_mhz,
        "bitstream": {"file": bitstream.name,
                      "sha256": hashlib.sha256(bitstream.read_bytes()).hexdigest()},
        "fmax": timing["fmax"], "utilisation": timing["utilisation"],
        "tools": tools, "build_seconds": build_seconds, "seed": seed,
        "control_token_sha256": token_sha256,
    }
    partial = Path(path).with_suffix(".partial")
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    partial.rename(path)    # a manifest exists only for a finished build
    return manifest


def read_manifest(path):
    """The manifest at `path` (a file, or a build folder holding ``manifest.json``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except OSError as error:
        raise ManifestError(f"cannot read the manifest {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ManifestError(f"{path} is not a manifest (invalid JSON: {error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ManifestError(f"{path}: not a tickwire manifest of format {FORMAT}")
    expected_identity(manifest, path)
    return manifest


def expected_identity(manifest, where="the manifest"):
    """The design identity (int) a board running this manifest's bitstream reports."""
    text = manifest.get("identity")
    try:
        value = int(text, 16)
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: identity {text!r} is not 16 hex digits") from None
    if len(text) != 16:
        raise ManifestError(f"{where}: identity {text!r} is not 16 hex digits")
    return value


def check_device_identity(reported, manifest):
    """Refuse (ManifestError) a device whose reported identity is not the manifest's."""
    expected = expected_identity(manifest)
    if reported != expected:
        raise ManifestError(
            f"design identity mismatch: the board reports {reported:016x}, the manifest "
            f"({manifest.get('board')}) says {expected:016x}: it runs another bitstream; "
            "refusing to arm")


def manifest_register_map(path):
    """The register map saved beside the manifest at `path` (``registers.json``)."""
    from tickwire.hdl.platform.registers import RegisterMap

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    try:
        return RegisterMap.from_json((folder / "registers.json").read_text())
    except OSError as error:
        raise ManifestError(f"no register map beside the manifest: {error}") from None


async def connect_with_manifest(device, path, **sim_parameters):
    """Open `device` (a `tickwire.host.api.connect` spec) with the register map built beside
    the manifest at `path`, refusing it (`ManifestError`) unless it reports the manifest's
    design identity: the check before a board is armed."""
    from tickwire.host.api import connect

    manifest = read_manifest(path)
    dev = await connect(device, check_identity=False, register_map=manifest_register_map(path),
                        **sim_parameters)
    try:
        check_device_identity(dev.identity, manifest)
    except ManifestError:
        dev.transport.close()
        raise
    return dev
