"""The one checkpoint format: a safetensors file per step, its metadata as JSON; and how a
path names a checkpoint.

    DIR/step-00001234.safetensors   named tensors (their names: tinyeffnet.training.state)
                                    + metadata {"tinyeffnet": "<json meta>"}: step, epoch,
                                    variant, model, classes, the run's config, format_version
                                    and two checksums (below)
    DIR/best.safetensors            relative symlink to the best step file so far
    DIR/.*.tmp-<pid>-*              a write in progress (or a crash's leftover): never read

A path given to a reader is a checkpoint file, or a work directory / checkpoints folder
meaning its best step file, else its latest (`resolve_checkpoint`). How the trainer fills
such a folder (a step file now and then, the best link, pruning) is checkpoint_dir.py's.

No numpy: tensors travel as `(dtype, shape, raw little-endian bytes)` records, which each
backend makes and reads (`backend.to_record` / `backend.from_record`, backends/contract.py);
the file itself is read and written by tinyeffnet._safetensors.

Verification: `tensors_sha256` covers every tensor's name, header dtype, shape and bytes;
`meta_sha256` covers the whole metadata (canonical JSON, sorted keys), that checksum and
format_version included, so the header's tensor table and everything that decides the
network (variant, model, classes, width, depth, padding, BN eps) are checked on every read.
A file of an older format is read only where what it carries can still be verified:

    format 3   both checksums verified
    format 2   tensors verified; its metadata carries no checksum: read, and a warning says so
    format 1   no checksum at all: refused, saying why
    no format_version, or a newer one: refused, saying why

Crash safety: a file appears only by `os.replace` of a fully written, fsynced temp file.
"""
import hashlib
import json
import logging
import math
import os
import re
from array import array

from backends.contract import RECORD_CODES, ContractError

from .. import _safetensors as safetensors_file

# 3: a second sha256, of the metadata (see the module's docstring). 2: optimizer state named by
# its tree path (tinyeffnet.training.state) and the sha256 of the tensors. 1: no checksum.
FORMAT_VERSION = 3
OLDEST_VERIFIABLE = 2
META_KEY = "tinyeffnet"
BEST_NAME = "best.safetensors"
_STEP_RE = re.compile(r"^step-(\d+)\.safetensors$")

# our dtype name -> (array.array code, safetensors header dtype)
_CODES = {name: (RECORD_CODES[name], header) for name, header in
          {"float32": "F32", "float64": "F64", "int32": "I32"}.items()}
_FROM_HEADER = {header: name for name, (_, header) in _CODES.items()}

_log = logging.getLogger(__name__)
_WARNED_UNVERIFIED_META = set()


class CheckpointError(ValueError):
    """A checkpoint cannot be written, found or read; the message says which file and why."""


def step_path(directory, step):
    return os.path.join(directory, f"step-{int(step):08d}.safetensors")


# --------------------------------------------------------------------- records
def to_record(backend, x):
    """A backend array -> (dtype, shape, raw bytes); bfloat16/float16 are stored as float32."""
    try:
        return backend.to_record(x)
    except ContractError as e:  # the message without the op's name: what the user reads
        raise CheckpointError(str(e).removeprefix("to_record: ")) from None


def from_record(backend, record):
    """(dtype, shape, raw bytes) -> a backend array, converting dtypes the backend lacks
    (backend.record_dtype): float32 loads into the python backend as float64, float64 into
    jax without x64 as float32."""
    try:
        return backend.from_record(*record)
    except ContractError as e:
        raise CheckpointError(str(e).removeprefix("from_record: ")) from None


# --------------------------------------------------------------------- reading
def _unreadable(path, why):
    if safetensors_file.is_pickle(path):
        return CheckpointError(f"{path} is a PyTorch pickle (torch.save), not a tinyeffnet checkpoint: tinyeffnet never "
                               "unpickles (loading a pickle can run code); convert the same weights' model.safetensors "
                               "with python -m tinyeffnet.convert --from timm|timm-pytorch|torchvision SRC --out DST")
    if _STEP_RE.match(os.path.basename(path)):  # a run's own checkpoint, damaged (cut short by a full disk, say)
        return CheckpointError(f"{path} is not a readable tinyeffnet checkpoint ({why}); {_newest_good_before(path)}: "
                               "delete the damaged file or point at that one")
    return CheckpointError(f"{path} is not a readable tinyeffnet checkpoint ({why}): give a run's checkpoint (its "
                           "work directory or a checkpoints/step-*.safetensors file) or converted weights "
                           "(python -m tinyeffnet.convert)")


def _meta_from_metadata(path, stored):
    """The metadata of a checkpoint, verified as far as its format allows (the module's docstring)."""
    if META_KEY not in (stored or {}):
        raise CheckpointError(f"{path} is not a readable tinyeffnet checkpoint (no {META_KEY!r} metadata: a "
                              "safetensors file from elsewhere?); convert published timm or torchvision weights "
                              "first (python -m tinyeffnet.convert), or point at a tinyeffnet checkpoint")
    try:
        meta = json.loads(stored[META_KEY])
    except ValueError:
        raise _unreadable(path, f"its {META_KEY!r} metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise _unreadable(path, f"its {META_KEY!r} metadata is not a JSON object")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _unreadable(path, "its metadata has no format_version, so what it holds and how to verify it are "
                                "unknown")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} uses checkpoint format {version} but this tinyeffnet reads "
                              f"up to {FORMAT_VERSION}; upgrade tinyeffnet")
    if version < OLDEST_VERIFIABLE:
        raise CheckpointError(f"{path} is a format-{version} checkpoint: it carries no checksum, so nothing in it can "
                              "be verified and it is not read; train again, or convert the published weights again, "
                              "with this tinyeffnet")
    if version >= 3:
        try:
            matches = meta.get("meta_sha256") == _meta_checksum(meta)
        except ValueError:  # a NaN or an infinity, which no writer puts there
            matches = False
        if not matches:
            raise CheckpointError(f"{path} is corrupt: its metadata (variant, model, classes, width, depth, padding, "
                                  "BN eps, config, tensor checksum) does not match the checksum written with it; "
                                  f"{_newest_good_before(path)}")
    elif "meta_sha256" in meta:
        raise CheckpointError(f"{path} says format {version} but carries format 3's metadata checksum: its header "
                              f"was edited; {_newest_good_before(path)}")
    elif path not in _WARNED_UNVERIFIED_META:
        _WARNED_UNVERIFIED_META.add(path)
        _log.warning(f"{path} is a format-{version} checkpoint: its tensors (names, dtypes, shapes, bytes) are "
                     "verified, its metadata (variant, model, width, depth, padding, BN eps, ...) carries no "
                     "checksum and is not")
    return meta


def _meta_checksum(meta):
    """sha256 of the metadata as canonical JSON (sorted keys), all of it but this checksum."""
    text = json.dumps({k: v for k, v in meta.items() if k != "meta_sha256"}, sort_keys=True, allow_nan=False,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def checkpoint_meta(path):
    """The metadata stored in a checkpoint, verified (format 3), without reading its tensors."""
    try:
        header = safetensors_file.read_header(path)
    except safetensors_file.SafetensorsError as e:
        raise _unreadable(path, e) from None
    return _meta_from_metadata(path, header.get("__metadata__"))


def _read(path):
    """(meta, {name: safetensors Record}) of a checkpoint file; one-line errors for unreadable ones."""
    try:
        records, metadata = safetensors_file.read(path)
    except safetensors_file.SafetensorsError as e:
        raise _unreadable(path, e) from None
    return _meta_from_metadata(path, metadata), records


def read_records(path):
    """(records {name: (dtype, shape, raw bytes)}, meta) of a checkpoint file, or of a
    directory's best/latest one, without making backend arrays (the weight converter
    moves the bytes as they are).

    The tensor bytes are checked against the checksum written with them: a corrupt file is
    refused, naming the newest older checkpoint that verifies."""
    path = resolve_checkpoint(path)
    meta, stored = _read(path)
    if not _checksum_matches(meta, stored):
        raise CheckpointError(f"{path} is corrupt: its tensors (names, dtypes, shapes, bytes) do not match the "
                              "checksum written with them; "
                              f"{_newest_good_before(path)}")
    records = {}
    for name, record in stored.items():
        dtype = _FROM_HEADER.get(record.dtype)
        if dtype is None:
            raise _unreadable(path, f"tensor {name!r} has unsupported dtype {record.dtype}")
        records[name] = (dtype, record.shape, record.raw)
    return records, meta


def load_checkpoint(path, backend):
    """(tensors, meta) from a checkpoint file, or from a directory's best/latest one; a
    corrupt file is refused (see read_records)."""
    path = resolve_checkpoint(path)
    records, meta = read_records(path)
    tensors = {}
    for name, record in records.items():
        try:
            tensors[name] = from_record(backend, record)
        except CheckpointError as e:
            raise _unreadable(path, f"tensor {name!r}: {e}") from None
    return tensors, meta


def _checksum(entries):
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name, header_dtype, shape, raw in sorted(entries):
        digest.update(f"{name}\0{header_dtype}\0{list(shape)}\0".encode())
        digest.update(raw)
    return digest.hexdigest()


def _checksum_matches(meta, stored):
    """Whether the tensors match tensors_sha256 (every readable format has one)."""
    return _checksum((name, r.dtype, r.shape, r.raw) for name, r in stored.items()) == meta.get("tensors_sha256")


def verify_checkpoint(path):
    """True if the file reads and its tensors and (format 3) metadata match their checksums."""
    try:
        return _checksum_matches(*_read(path))
    except CheckpointError:
        return False


def _newest_good_before(path):
    """Where to go back to: the newest older step file in the same folder that verifies."""
    directory = os.path.dirname(os.path.abspath(path))
    match = _STEP_RE.match(os.path.basename(path))
    files = step_files(directory)
    older = sorted((s for s in files if match is None or s < int(match.group(1))), reverse=True)
    for s in older:
        candidate = os.path.join(directory, files[s])
        if verify_checkpoint(candidate):
            return f"the newest older checkpoint that verifies is {candidate}"
    return "no older checkpoint in its folder verifies"


# --------------------------------------------------------------------- finding
def step_files(directory):
    """{step: filename} of the complete step files; temp files never match."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {int(m.group(1)): name for name in names if (m := _STEP_RE.match(name))}


def latest_checkpoint(directory):
    """Path of the highest-step checkpoint in `directory`, or None."""
    files = step_files(directory)
    return os.path.join(directory, files[max(files)]) if files else None


def best_checkpoint(directory):
    """Path of the step file that best.safetensors points at, or None (absent or dangling)."""
    link = os.path.join(directory, BEST_NAME)
    try:
        target = os.path.join(directory, os.readlink(link))
    except OSError:
        return None
    return target if os.path.isfile(target) else None


def resolve_checkpoint(path, prefer="best"):
    """A checkpoint file as is; a work dir (holding checkpoints/) or a checkpoints dir ->
    its best checkpoint, else its latest (prefer="latest" for resuming: latest first); a
    folder holding one .safetensors file (what convert wrote, a hub download) -> that file."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise CheckpointError(f"{path} does not exist (give a checkpoint file, a checkpoints "
                              "directory or a work directory that holds checkpoints/)")
    sub = os.path.join(path, "checkpoints")
    directory = sub if os.path.isdir(sub) else path
    finders = [best_checkpoint, latest_checkpoint]
    if prefer == "latest":
        finders.reverse()
    for find in finders:
        found = find(directory)
        if found:
            return found
    loose = sorted(n for n in os.listdir(directory) if n.endswith(".safetensors") and not n.startswith("."))
    if len(loose) == 1:
        return os.path.join(directory, loose[0])
    if loose:
        raise CheckpointError(f"{directory} holds {len(loose)} .safetensors files ({', '.join(loose[:3])}"
                              f"{', ...' if len(loose) > 3 else ''}) and no run's checkpoints: give the file")
    raise CheckpointError(f"no checkpoints in {directory} (expected a run's checkpoints/step-*.safetensors or a "
                          "converted .safetensors file): train first, or convert published weights with "
                          "python -m tinyeffnet.convert")


# --------------------------------------------------------------------- writing
def records_of(path, tensors, backend):
    """{name: (dtype, shape, raw bytes)} of backend arrays."""
    records = {}
    for name, x in tensors.items():
        try:
            records[name] = to_record(backend, x)
        except CheckpointError as e:
            raise CheckpointError(f"cannot save {path}: tensor {name!r}: {e}") from None
    return records


def _check_records(path, records):
    """Refuse bad names, unknown dtypes, wrong sizes and non-finite values."""
    for name, (dtype, shape, raw) in records.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise CheckpointError(f"cannot save {path}: bad tensor name {name!r} (use a non-empty "
                                  "string such as 'params/stem.weight')")
        if dtype not in _CODES or len(raw) != math.prod(shape) * array(_CODES[dtype][0]).itemsize:
            raise CheckpointError(f"cannot save {path}: tensor {name!r} is not a whole {dtype} tensor of shape "
                                  f"{tuple(shape)} (supported: {', '.join(_CODES)})")
        if dtype != "int32":
            values = array(_CODES[dtype][0])
            values.frombytes(raw)
            if not math.isfinite(sum(values)):  # NaN and infinities survive the sum
                raise CheckpointError(f"cannot save {path}: tensor {name!r} holds a NaN or an infinity; a "
                                      "checkpoint of a diverged run is never written")


def checkpoint_bytes(path, records, meta):
    """The file's bytes: the records and `meta` plus format_version and the two checksums."""
    _check_records(path, records)
    checksum = _checksum((name, _CODES[dtype][1], shape, raw) for name, (dtype, shape, raw) in records.items())
    full_meta = {k: v for k, v in meta.items() if k != "meta_sha256"}
    full_meta.update(format_version=FORMAT_VERSION, tensors_sha256=checksum)
    try:
        full_meta["meta_sha256"] = _meta_checksum(full_meta)
        header_meta = {META_KEY: json.dumps(full_meta, allow_nan=False)}
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"cannot save {path}: the metadata is not JSON-serialisable ({e}); "
                              "store plain numbers, strings, lists and dicts") from None
    return safetensors_file.serialize({name: safetensors_file.Record(_CODES[dtype][1], tuple(shape), raw)
                                       for name, (dtype, shape, raw) in records.items()}, header_meta)


def write_checkpoint_file(path, records, meta):
    """Write one checkpoint file at `path` atomically (no step naming, no best, no pruning):
    what the weight converter writes. `records` are {name: (dtype, shape, raw bytes)}."""
    return safetensors_file.write(path, checkpoint_bytes(os.fspath(path), records, meta))
