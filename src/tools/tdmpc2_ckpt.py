#!/usr/bin/env python3
"""src/tools/tdmpc2_ckpt.py: TD-MPC2 .pt checkpoints <-> pompc safetensors checkpoints.

Python 3.11, standard library only (torch is never imported: the .pt zip format is read and
written here; with torch installed, tests/test_convert.py also round-trips through it).

Run book
  usage      python3 src/tools/tdmpc2_ckpt.py to-pompc IN.pt OUT.safetensors task=NAME
                 [preset=tdmpc2] [key=value ...]
             python3 src/tools/tdmpc2_ckpt.py to-pt IN.safetensors OUT.pt
                 [layout=tensordict|release] [aliases=true|false] [keep_prior=false|true]
             python3 src/tools/tdmpc2_ckpt.py show FILE          (either kind: its tensors)
             then: build/pompc eval checkpoint=OUT.safetensors episodes=10
  to-pompc   reads TD-MPC2's torch.save({"model": model.state_dict()}, path) (a bare state dict
             too) and writes a checkpoint `pompc eval` and `pompc train resume=true` accept.
             The config record is the key=value arguments (pompc train's keys; task= is
             required, preset= defaults to pompc's tdmpc2) plus what the tensors fix: model_size
             (from the encoder's depth: 2 layers 5 (1 if given), 3 19, 4 48, 5 317), enc_dim,
             mlp_dim, latent_dim, num_q, critic (Q heads' input Z+A: q, Z: v) and, from the
             buffers log_std_min / log_std_dif, log_std_min and log_std_max. A key=value that
             contradicts the tensors is refused. Pass the planner keys the model was trained
             with (iterations, num_samples, ...): eval plans with them.
             Not in a TD-MPC2 .pt, so set as a fresh pompc model has them (and said so on
             stdout): Adam moments 0, Adam steps 0 (bias corrections 0), S_Q = S_D = 1
             (TD-MPC2's RunningScale lives outside model.state_dict()), every counter 0
             (updates, steps, episodes; next_eval = next_checkpoint = 0: a resumed run
             evaluates and checkpoints at its first round's end). Eval reads none of these; a
             run resumed from the file trains the loaded weights with a fresh optimizer,
             seed phase and empty buffer. The checksum is pompc's format 2 (src/io/checksum.h: FNV-1a
             64 over each tensor's name and bytes, tensors sorted by name, then each metadata
             entry's key and value after their lengths, keys sorted); pure Python
             hashes ~4 MB/s (the 5M model: about 10 s, 317M: minutes; zero tensors are free).
  to-pt      writes {"model": OrderedDict(name -> tensor)} that torch.load reads (also with
             weights_only=True): the model tensors under TD-MPC2's names and shapes, float32,
             contiguous, on "cpu". Not carried (TD-MPC2's .pt has no place for them; listed on
             stdout): the Adam state, S_Q and S_D, counters and the config record. The
             learned prior "_pi_prior.*" (PO-MPC, not part of TD-MPC2's WorldModel) is dropped
             unless keep_prior=true (then TD-MPC2's strict load_state_dict refuses the file,
             pompc takes it back; a prior=learned preset such as pompc needs it). critic=v
             checkpoints (BMPC) keep their V heads under the Q names: pompc reads them back,
             TD-MPC2 cannot use them.
  names      pompc's tensors are TD-MPC2's state_dict names (src/model/world_model.h):
               _encoder.state.<i>.{weight,bias,ln.weight,ln.bias}   (the last: SimNorm layer)
               _dynamics.<i>.*  _reward.<i>.*  _pi.<i>.*   i = 0, 1 NormedLinear; 2 Linear
                                                            (weight [out, in], bias [out])
               _Qs.params.<i>.<field>         the Qn heads stacked: weight [Qn, out, in], ...
               _target_Qs_params.<i>.<field>  the Polyak copy, the same shapes
             layout=tensordict (TD-MPC2 since its tensordict Ensemble, commit 13ef0039, the
             default): those names, plus what model.state_dict() holds besides:
               _detach_Qs_params.<i>.<field>  = _Qs.params (TD-MPC2 keeps one storage)
               log_std_min, log_std_dif       0-d float32 buffers (pompc's log_std_min and
                                              log_std_max - log_std_min)
               <prefix>.__batch_size, <prefix>.__device  torch.Size([Qn]) and None, for each
                                              TensorDictParams prefix (tensordict's state_dict)
               aliases=true (default) also writes _detach_Qs.params.* and _target_Qs.params.*
                                              (+ their __batch_size / __device): the same
                                              TensorDictParams registered a second time under
                                              the deep-copied Ensembles, which nn.Module's
                                              state_dict lists again; aliases=false leaves them
                                              out (see "doubtful" below)
             layout=release (TD-MPC2's first release, functorch's combine_state_for_ensemble;
             the Q names of the checkpoints TD-MPC2 published): the ensembles as parameter lists
               _Qs.params.<4 i + k>, _target_Qs.params.<4 i + k>, k over (weight, bias,
               ln.weight, ln.bias) (TD-MPC2's api_model_conversion maps them to the above)
             to-pompc reads both layouts; aliases must equal what they alias (bit for bit);
             non-tensor entries (__batch_size, __device, _metadata) are ignored; a file without
             target Qs gets a copy of the Qs (TD-MPC2's initialisation; said on stdout).
  refused    multi-task checkpoints (_task_emb, _action_masks: pompc is single-task), pixel
             encoders, the pre-release flat-Sequential names (_dynamics.0.0.weight ...),
             num_bins != 101, dtypes other than float32 / float16 / bfloat16 (the last two
             widened exactly), any key not in the tables above.
  pickles    a .pt is a zip: <archive>/data.pkl (a pickle whose tensors are
             torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
             hooks[, metadata]) and whose storages are persistent ids ('storage', torch.<T>Storage,
             key, location, numel)), <archive>/data/<key> (the storages' raw little-endian
             bytes), <archive>/version, <archive>/byteorder. It is read with a restricted
             Unpickler: find_class maps collections.OrderedDict, torch._utils._rebuild_tensor_v2
             and _rebuild_parameter, the storage types, torch.Size and torch.device to local
             constructors and refuses every other global; persistent_load accepts only the
             storage tuple. Never point plain pickle.load or torch.load(weights_only=False) at a
             file you did not write: a pickle can run any code; this reader cannot.
             The writer emits pickle protocol 2 by hand (the opcodes torch's own pickler and
             its weights_only unpickler use), storages 64-byte aligned in the zip as torch
             writes them, aliases sharing one storage.
  doubtful   TD-MPC2's exact state_dict keys were read from its source, not from a file saved by
             torch (no torch here): whether model.state_dict() lists _detach_Qs.params.* /
             _target_Qs.params.* (aliases=true follows nn.Module.state_dict, which lists a
             module once per name it is registered under) and the __device value TD-MPC2
             writes (None here). If TD-MPC2's load_state_dict reports unexpected
             _detach_Qs.params / _target_Qs.params keys, convert with aliases=false.
  test       make test-convert (tests/test_convert.py: round trips on a real pompc checkpoint,
             pompc eval of a converted hand-made .pt, malicious pickles refused; torch.save /
             torch.load cross-checks when torch is installed)
"""

from __future__ import annotations

import array
import collections
import io
import json
import os
import pickle
import re
import struct
import sys
import zipfile

FORMAT = "pompc-checkpoint-2"     # trainer.cpp kFormat (written)
FORMAT_V1 = "pompc-checkpoint-1"  # trainer.cpp kFormatV1 (read: its checksum covers tensors only)
NUM_BINS = 101                 # pompc's K (ModelConfig::num_bins)
FIELDS = ("weight", "bias", "ln.weight", "ln.bias")  # a NormedLinear's tensors, in order
# Encoder layers in a .pt -> pompc model_size (num_enc_layers: 1M and 5M 2, 19M 3, 48M 4, 317M 5).
SIZE_OF_ENC_LAYERS = {2: 5, 3: 19, 4: 48, 5: 317}
ENC_LAYERS_OF_SIZE = {1: 2, 5: 2, 19: 3, 48: 4, 317: 5}
# What to-pompc sets that TD-MPC2's .pt does not hold (printed, and recorded in the metadata).
FRESH_STATE = ("Adam moments 0, Adam steps 0, S_Q = S_D = 1, counters 0 "
               "(a TD-MPC2 .pt holds the model only)")


class ConversionError(Exception):
    """A file or argument the converter refuses; the message says what to change."""


# ---- tensors -----------------------------------------------------------------------------------

# dtype name (safetensors spelling) -> bytes per element
DTYPES = {"F32": 4, "F64": 8, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
          "U8": 1, "U32": 4, "U64": 8, "BOOL": 1}


class Tensor:
    """A contiguous, row-major, little-endian tensor: dtype name, shape, raw bytes."""

    __slots__ = ("dtype", "shape", "data")

    def __init__(self, dtype, shape, data):
        self.dtype = dtype
        self.shape = tuple(int(d) for d in shape)
        self.data = bytes(data)
        if len(self.data) != self.numel() * DTYPES[dtype]:
            raise ConversionError(f"tensor of shape {list(self.shape)} and dtype {dtype} needs "
                                  f"{self.numel() * DTYPES[dtype]} bytes, got {len(self.data)}")

    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def __eq__(self, other):
        return (isinstance(other, Tensor) and self.dtype == other.dtype
                and self.shape == other.shape and self.data == other.data)

    def __repr__(self):
        return f"Tensor({self.dtype}, {list(self.shape)})"

    def to_f32(self, name):
        """The same values as float32 (float16 / bfloat16 widen exactly; others refused)."""
        if self.dtype == "F32":
            return self
        if self.dtype == "F16":
            n = self.numel()
            return Tensor("F32", self.shape,
                          struct.pack(f"<{n}f", *struct.unpack(f"<{n}e", self.data)))
        if self.dtype == "BF16":
            half = array.array("H", self.data)
            if sys.byteorder != "little":
                half.byteswap()
            full = array.array("I", (h << 16 for h in half))
            if sys.byteorder != "little":
                full.byteswap()
            return Tensor("F32", self.shape, full.tobytes())
        raise ConversionError(f"tensor {name} is {self.dtype}: pompc holds float32 weights "
                              "(float16 and bfloat16 are widened exactly, nothing else is read)")


def f32_scalar(x):
    return Tensor("F32", (), struct.pack("<f", x))


def f32_value(t):
    """The one value of a float32 tensor with one element."""
    if t.dtype != "F32" or t.numel() != 1:
        raise ConversionError(f"expected one float32 value, got {t!r}")
    return struct.unpack("<f", t.data)[0]


def round_f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


# ---- safetensors (src/io/safetensors.h) --------------------------------------------------------

def read_safetensors(path):
    """(tensors: dict name -> Tensor, metadata: dict)."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ConversionError(f"{path}: shorter than 8 bytes: not a safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise ConversionError(f"{path}: header length {n} beyond the file: not a safetensors file")
    try:
        header = json.loads(blob[8:8 + n])
    except ValueError as e:
        raise ConversionError(f"{path}: header is not JSON ({e}): not a safetensors file") from e
    try:
        meta = header.pop("__metadata__", {}) or {}
        base = 8 + n
        tensors = {}
        for name, info in header.items():
            dtype = info["dtype"]
            if dtype not in DTYPES:
                raise ConversionError(f"{path}: tensor {name} has dtype {dtype}, not read here")
            begin, end = info["data_offsets"]
            if not 0 <= begin <= end <= len(blob) - base:
                raise ConversionError(f"{path}: tensor {name} lies outside the file "
                                      "(truncated?)")
            tensors[name] = Tensor(dtype, info["shape"], blob[base + begin:base + end])
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ConversionError(f"{path}: malformed safetensors header ({e!r})") from e
    return tensors, meta


def write_safetensors(path, tensors, metadata):
    """safetensors as pompc writes it: compact JSON, __metadata__ first, tensors by dtype size
    (largest first) then name, the header padded with spaces to a multiple of 8; atomic."""
    order = sorted(tensors, key=lambda k: (-DTYPES[tensors[k].dtype], k))
    header = {"__metadata__": dict(metadata)}
    offset = 0
    for name in order:
        t = tensors[name]
        header[name] = {"dtype": t.dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(t.data)]}
        offset += len(t.data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    with _AtomicFile(path) as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in order:
            f.write(tensors[name].data)


class _AtomicFile:
    """Writes <path>.tmp.<pid>, then renames it onto path (as pompc's AtomicWriter)."""

    def __init__(self, path):
        self.path = path
        self.tmp = f"{path}.tmp.{os.getpid()}"

    def __enter__(self):
        self.f = open(self.tmp, "wb")
        return self.f

    def __exit__(self, kind, value, tb):
        if kind is None:
            self.f.flush()
            os.fsync(self.f.fileno())
        self.f.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)
        return False


# ---- pompc's checkpoint checksum (src/io/checksum.h, Hash::fnv1a) ----------------------------

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = (1 << 64) - 1


def fnv1a(h, data):
    if not data.strip(b"\0"):  # all zero bytes: h ^ 0 = h, so h * P^n
        return h * pow(FNV_PRIME, len(data), 1 << 64) & MASK64
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK64
    return h


def checksum(tensors, meta=None):
    """Format 2 (meta given): tensors, then every metadata entry but "checksum" in key order,
    key and value each after its length (uint64 little-endian); format 1: the tensors only."""
    h = FNV_OFFSET
    for name in sorted(tensors, key=lambda k: k.encode()):
        h = fnv1a(h, name.encode())
        h = fnv1a(h, tensors[name].data)
    if meta is not None:
        for key in sorted(meta, key=lambda k: k.encode()):
            if key == "checksum":
                continue
            for text in (key.encode(), meta[key].encode()):
                h = fnv1a(h, struct.pack("<Q", len(text)))
                h = fnv1a(h, text)
    return f"{h:016x}"


# ---- the .pt zip: restricted reader ----------------------------------------------------------

# torch.<name> storage classes -> dtype (UntypedStorage: bytes)
STORAGE_DTYPES = {"FloatStorage": "F32", "DoubleStorage": "F64", "HalfStorage": "F16",
                  "BFloat16Storage": "BF16", "LongStorage": "I64", "IntStorage": "I32",
                  "ShortStorage": "I16", "CharStorage": "I8", "ByteStorage": "U8",
                  "BoolStorage": "BOOL", "UntypedStorage": "U8"}
DTYPE_STORAGES = {"F32": "FloatStorage", "F64": "DoubleStorage", "F16": "HalfStorage",
                  "BF16": "BFloat16Storage", "I64": "LongStorage", "I32": "IntStorage",
                  "I16": "ShortStorage", "I8": "CharStorage", "U8": "ByteStorage",
                  "BOOL": "BoolStorage"}


class StorageType:
    """Stands for a torch storage class in a pickle (only ever a marker, never called)."""

    __slots__ = ("name", "dtype")

    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]

    def __repr__(self):
        return f"torch.{self.name}"


class Storage:
    __slots__ = ("dtype", "data")

    def __init__(self, dtype, data):
        self.dtype = dtype
        self.data = data


class TorchSize(tuple):
    """torch.Size in a pickle (tensordict's __batch_size)."""

    def __repr__(self):
        return f"torch.Size({list(self)})"


class TorchDevice:
    """torch.device in a pickle (tensordict's __device)."""

    __slots__ = ("type", "index")

    def __init__(self, type, index=None):
        if not isinstance(type, str) or not (index is None or isinstance(index, int)):
            raise pickle.UnpicklingError(f"torch.device({type!r}, {index!r}) is not a device")
        self.type, self.index = type, index

    def __eq__(self, other):
        return isinstance(other, TorchDevice) and (self.type, self.index) == (other.type,
                                                                              other.index)

    def __repr__(self):
        return f"torch.device({self.type!r}" + (f", {self.index})" if self.index is not None
                                                else ")")


def _contiguous_strides(shape):
    strides, s = [], 1
    for d in reversed(shape):
        strides.append(s)
        s *= d
    return tuple(reversed(strides))


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def rebuild_tensor(storage, offset, size, stride, requires_grad, hooks, metadata=None):
    """torch._utils._rebuild_tensor_v2: a view of a storage, gathered into a contiguous Tensor."""
    if not isinstance(storage, Storage):
        raise pickle.UnpicklingError("a tensor's storage is not a storage record")
    if not (_is_int(offset) and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride) and all(_is_int(d) and d >= 0 for d in size + stride)
            and offset >= 0):
        raise pickle.UnpicklingError(f"tensor view offset={offset!r} size={size!r} "
                                     f"stride={stride!r} is malformed")
    if not isinstance(requires_grad, bool):
        raise pickle.UnpicklingError("a tensor's requires_grad is not a bool")
    isz = DTYPES[storage.dtype]
    numel = 1
    for d in size:
        numel *= d
    avail = len(storage.data) // isz
    if numel and offset + sum((d - 1) * s for d, s in zip(size, stride)) >= avail:
        raise pickle.UnpicklingError(f"tensor view size={size} stride={stride} offset={offset} "
                                     f"reaches past its storage of {avail} elements")
    if numel == 0:
        return Tensor(storage.dtype, size, b"")
    if stride == _contiguous_strides(size) or numel == 1:
        return Tensor(storage.dtype, size, storage.data[offset * isz:(offset + numel) * isz])
    index = [offset]
    for d, s in zip(size, stride):
        index = [i + j * s for i in index for j in range(d)]
    data = storage.data
    return Tensor(storage.dtype, size, b"".join(data[i * isz:(i + 1) * isz] for i in index))


def rebuild_parameter(data, requires_grad, hooks):
    """torch._utils._rebuild_parameter: an nn.Parameter is its tensor here."""
    if not isinstance(data, Tensor):
        raise pickle.UnpicklingError("a parameter's data is not a tensor")
    return data


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    ("torch", "Size"): TorchSize,
    ("torch", "device"): TorchDevice,
    ("torch.storage", "UntypedStorage"): StorageType("UntypedStorage"),
}
for _name in STORAGE_DTYPES:
    ALLOWED_GLOBALS[("torch", _name)] = StorageType(_name)


class RestrictedUnpickler(pickle.Unpickler):
    """Loads data.pkl of a .pt: only the globals of ALLOWED_GLOBALS, only storage persistent ids
    (read from the zip by key). Anything else is refused, never imported or called."""

    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self.archive = archive
        self.prefix = prefix
        self.storages = {}

    def find_class(self, module, name):
        found = ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: a .pt is a pickle, and this reader "
                "only rebuilds tensors, storages, OrderedDict, torch.Size and torch.device "
                "(anything else could run code)")
        return found

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], StorageType) and isinstance(pid[2], str)
                and re.fullmatch(r"[A-Za-z0-9_]+", pid[2]) and isinstance(pid[3], str)
                and _is_int(pid[4]) and pid[4] >= 0):
            raise pickle.UnpicklingError(f"refusing persistent id {pid!r}: only "
                                         "('storage', torch.<T>Storage, key, location, numel)")
        kind, key, numel = pid[1], pid[2], pid[4]
        if key not in self.storages:
            entry = f"{self.prefix}data/{key}"
            try:
                data = self.archive.read(entry)
            except KeyError:
                raise pickle.UnpicklingError(f"storage {key} has no record {entry}") from None
            # UntypedStorage counts bytes; typed storages count elements
            want = numel if kind.name == "UntypedStorage" else numel * DTYPES[kind.dtype]
            if len(data) != want:
                raise pickle.UnpicklingError(f"storage {key}: {len(data)} bytes, its persistent "
                                             f"id says {want}")
            self.storages[key] = Storage(kind.dtype, data)
        return self.storages[key]


def read_pt(path):
    """The object torch.save wrote (dicts, OrderedDicts, Tensors, TorchSize, None ...)."""
    if not zipfile.is_zipfile(path):
        raise ConversionError(f"{path} is not a zip archive: not a .pt of torch >= 1.6 (legacy "
                              "torch.save files are not read; re-save it with a current torch)")
    try:
        return _read_zip(path)
    except zipfile.BadZipFile as e:
        raise ConversionError(f"{path}: damaged zip archive ({e})") from e


def _read_zip(path):
    with zipfile.ZipFile(path) as z:
        pkls = [n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise ConversionError(f"{path}: a .pt holds one <archive>/data.pkl, found {pkls}")
        prefix = pkls[0][:-len("data.pkl")]
        if prefix + "byteorder" in z.namelist():
            order = z.read(prefix + "byteorder").decode(errors="replace").strip()
            if order != "little":
                raise ConversionError(f"{path}: byteorder {order!r}; only little-endian is read")
        try:
            return RestrictedUnpickler(io.BytesIO(z.read(pkls[0])), z, prefix).load()
        except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError,
                IndexError, KeyError) as e:
            raise ConversionError(f"{path}: {e}") from e


# ---- the .pt zip: writer (pickle protocol 2 by hand) ------------------------------------------

class _PickleWriter:
    """The opcodes of protocol 2 that a torch state dict needs (see pickletools)."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")  # PROTO 2
        self.storages = []                 # (key, Tensor) in key order

    def global_(self, module, name):
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"  # GLOBAL

    def str_(self, s):
        b = s.encode()
        self.out += b"X" + struct.pack("<I", len(b)) + b  # BINUNICODE

    def int_(self, v):
        if 0 <= v < 256:
            self.out += b"K" + bytes([v])                # BININT1
        elif 0 <= v < 65536:
            self.out += b"M" + struct.pack("<H", v)      # BININT2
        elif -(1 << 31) <= v < (1 << 31):
            self.out += b"J" + struct.pack("<i", v)      # BININT
        else:
            b = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
            self.out += b"\x8a" + bytes([len(b)]) + b    # LONG1

    def tuple_(self, emit_items, n):
        if n == 0:
            self.out += b")"                             # EMPTY_TUPLE
            return
        if n > 3:
            self.out += b"("                             # MARK
        emit_items()
        self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(n, b"t")  # TUPLE1/2/3, TUPLE

    def ints_(self, values):
        self.tuple_(lambda: [self.int_(v) for v in values], len(values))

    def ordered_dict_(self):
        self.global_("collections", "OrderedDict")
        self.out += b")R"                                # EMPTY_TUPLE REDUCE

    def tensor_(self, key, t):
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.out += b"("                                 # MARK (the 6 arguments)
        self.out += b"("                                 # MARK (the persistent id)
        self.str_("storage")
        self.global_("torch", DTYPE_STORAGES[t.dtype])
        self.str_(key)
        self.str_("cpu")
        self.int_(t.numel())
        self.out += b"tQ"                                # TUPLE BINPERSID
        self.int_(0)                                     # storage offset
        self.ints_(t.shape)
        self.ints_(_contiguous_strides(t.shape))
        self.out += b"\x89"                              # NEWFALSE: requires_grad
        self.ordered_dict_()                             # backward hooks
        self.out += b"tR"                                # TUPLE REDUCE

    def value_(self, v, keys):
        if v is None:
            self.out += b"N"                             # NONE
        elif isinstance(v, TorchSize):
            self.global_("torch", "Size")
            self.tuple_(lambda: self.ints_(tuple(v)), 1)
            self.out += b"R"                             # REDUCE
        elif isinstance(v, Tensor):
            key = keys.get(id(v))
            if key is None:  # aliases (the same Tensor object) share one storage
                key = keys[id(v)] = str(len(self.storages))
                self.storages.append((key, v))
            self.tensor_(key, v)
        else:
            raise ConversionError(f"cannot write {type(v).__name__} into a .pt")

    def state_dict_(self, model):
        """{"model": OrderedDict(model)} then STOP."""
        self.out += b"}"                                 # EMPTY_DICT
        self.str_("model")
        self.ordered_dict_()
        keys = {}
        self.out += b"("                                 # MARK
        for name, v in model.items():
            self.str_(name)
            self.value_(v, keys)
        self.out += b"us."                               # SETITEMS SETITEM STOP


def _aligned_info(zf, name, size, align=64):
    """A stored ZipInfo whose data starts on a multiple of `align` (torch's 'FB' extra field)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    zip64 = 20 if size * 1.05 > zipfile.ZIP64_LIMIT else 0  # zipfile adds a zip64 extra then
    start = zf.fp.tell() + 30 + len(name.encode()) + 4 + zip64
    pad = -start % align
    info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
    return info


def write_pt(path, model, archive="archive"):
    """torch.save({"model": model}) for an OrderedDict of Tensor / TorchSize / None."""
    w = _PickleWriter()
    w.state_dict_(model)
    with _AtomicFile(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        records = [(f"{archive}/data.pkl", bytes(w.out)), (f"{archive}/byteorder", b"little")]
        records += [(f"{archive}/data/{key}", t.data) for key, t in w.storages]
        records += [(f"{archive}/version", b"3\n")]
        for name, data in records:
            z.writestr(_aligned_info(z, name, len(data)), data)


# ---- name tables -------------------------------------------------------------------------------

class Dims:
    """The sizes a set of pompc / TD-MPC2 tensors fixes (validated against every shape)."""

    def __init__(self, t, where):
        def need(name):
            if name not in t:
                raise ConversionError(f"{where}: no tensor {name}: not a TD-MPC2 / pompc model")
            return t[name]

        n_enc = 0
        while f"_encoder.state.{n_enc}.weight" in t:
            n_enc += 1
        if n_enc < 2:
            raise ConversionError(f"{where}: the encoder has {n_enc} layer(s); TD-MPC2's state "
                                  "encoder has at least 2 (_encoder.state.0/1.weight)")
        self.enc_layers = n_enc
        self.O = need("_encoder.state.0.weight").shape[1]
        self.E = need("_encoder.state.0.weight").shape[0]
        self.Z = need(f"_encoder.state.{n_enc - 1}.weight").shape[0]
        self.M = need("_dynamics.0.weight").shape[0]
        self.A = need("_pi.2.weight").shape[0] // 2
        self.K = need("_reward.2.weight").shape[0]
        q0 = need("_Qs.params.0.weight")
        if len(q0.shape) != 3:
            raise ConversionError(f"{where}: _Qs.params.0.weight has shape {list(q0.shape)}, "
                                  "not [Qn, out, in]")
        self.Qn, self.critic_in = q0.shape[0], q0.shape[2]
        if self.critic_in == self.Z + self.A:
            self.critic = "q"
        elif self.critic_in == self.Z:
            self.critic = "v"
        else:
            raise ConversionError(f"{where}: the Q heads take {self.critic_in} inputs: neither "
                                  f"Z + A = {self.Z + self.A} (Q critic) nor Z = {self.Z} (V)")
        self.prior = "_pi_prior.0.weight" in t
        if self.K != NUM_BINS:
            raise ConversionError(f"{where}: the reward head has {self.K} bins; pompc's num_bins "
                                  f"is {NUM_BINS} (TD-MPC2's default)")

    def table(self):
        """pompc's tensors: name -> (parameter set, shape), as WorldModel::build_layout."""
        O, A, E, M, Z, K, Qn = self.O, self.A, self.E, self.M, self.Z, self.K, self.Qn
        out = {}

        def add(prefix, pset, dims_io, groups=None):
            for i, (n_in, n_out, normed) in enumerate(dims_io):
                shapes = {"weight": (n_out, n_in), "bias": (n_out,), "ln.weight": (n_out,),
                          "ln.bias": (n_out,)}
                for field in FIELDS if normed else FIELDS[:2]:
                    s = shapes[field]
                    out[f"{prefix}.{i}.{field}"] = (pset, (groups,) + s if groups else s)

        enc = [(O if i == 0 else E, E, True) for i in range(self.enc_layers - 1)]
        add("_encoder.state", "model", enc + [(E, Z, True)])
        add("_dynamics", "model", [(Z + A, M, True), (M, M, True), (M, Z, True)])
        add("_reward", "model", [(Z + A, M, True), (M, M, True), (M, K, False)])
        qs = [(self.critic_in, M, True), (M, M, True), (M, K, False)]
        add("_Qs.params", "model", qs, Qn)
        add("_pi", "pi", [(Z, M, True), (M, M, True), (M, 2 * A, False)])
        add("_target_Qs_params", "target_q", qs, Qn)
        if self.prior:
            add("_pi_prior", "prior", [(Z, M, True), (M, M, True), (M, 2 * A, False)])
        return out

    def check(self, t, where):
        """Every pompc tensor present with its shape, and nothing else."""
        table = self.table()
        errors = [f"missing {n} {list(s)}" for n, (_, s) in table.items() if n not in t]
        errors += [f"{n} has shape {list(t[n].shape)}, the layout implies {list(s)}"
                   for n, (_, s) in table.items() if n in t and t[n].shape != s]
        errors += [f"unknown tensor {n}" for n in t if n not in table]
        if errors:
            raise ConversionError(f"{where}: the tensors do not form one TD-MPC2 world model "
                                  f"(Z={self.Z}, A={self.A}, M={self.M}, Qn={self.Qn}):\n  "
                                  + "\n  ".join(errors))


# ---- TD-MPC2 state dict -> pompc tensors ------------------------------------------------------

def from_tdmpc2(state, where):
    """pompc's model tensors, (log_std_min, log_std_max) from the buffers (or None), the layout
    name and notes on what was ignored or filled in."""
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ConversionError(f"{where}: holds a {type(state).__name__}, not TD-MPC2's "
                              "{'model': state_dict} or a state dict")
    for bad, why in (("_task_emb.weight", "a multi-task model (pompc is single-task)"),
                     ("_action_masks", "a multi-task model (pompc is single-task)"),
                     ("_dynamics.0.0.weight", "the pre-release flat-Sequential names "
                                              "(load it in TD-MPC2 and re-save it)")):
        if bad in state:
            raise ConversionError(f"{where}: {bad}: {why}")
    for name in state:
        if isinstance(name, str) and re.match(r"_encoder\.(?!state\.)", name):
            raise ConversionError(f"{where}: {name}: a pixel (or other non-state) encoder; "
                                  "pompc's encoder is TD-MPC2's state MLP")
    out, aliases, buffers, ignored = {}, {}, {}, []
    canonical = {"_Qs.params": "_Qs.params", "_detach_Qs_params": "_Qs.params",
                 "_detach_Qs.params": "_Qs.params", "_target_Qs_params": "_target_Qs_params",
                 "_target_Qs.params": "_target_Qs_params"}
    layouts = set()
    for name, v in state.items():
        if not isinstance(name, str):
            raise ConversionError(f"{where}: a key {name!r} is not a string")
        if not isinstance(v, Tensor):
            if name.endswith((".__batch_size", ".__device")):
                ignored.append(name)
                continue
            raise ConversionError(f"{where}: {name} holds a {type(v).__name__}, not a tensor")
        if name in ("log_std_min", "log_std_dif"):
            buffers[name] = v
            continue
        m = re.fullmatch(r"(_Qs\.params|_detach_Qs_params|_detach_Qs\.params|_target_Qs_params|"
                         r"_target_Qs\.params)\.(\d+|\d+\.(?:weight|bias|ln\.weight|ln\.bias))",
                         name)
        if m:
            prefix, rest = m.groups()
            if rest.isdigit():  # the first release: parameter lists, index 4 l + k
                if prefix not in ("_Qs.params", "_target_Qs.params"):
                    raise ConversionError(f"{where}: unknown key {name}")
                layouts.add("release")
                main = True
                rest = f"{int(rest) // 4}.{FIELDS[int(rest) % 4]}"
            else:
                layouts.add("tensordict")
                main = prefix in ("_Qs.params", "_target_Qs_params")
            target = f"{canonical[prefix]}.{rest}"
            if not main:
                aliases[name] = (target, v.to_f32(name))
            elif target in out:
                raise ConversionError(f"{where}: {name} and another key both give {target}")
            else:
                out[target] = v.to_f32(name)
            continue
        if re.fullmatch(r"(_encoder\.state|_dynamics|_reward|_pi|_pi_prior)\.\d+\."
                        r"(weight|bias|ln\.weight|ln\.bias)", name):
            out[name] = v.to_f32(name)
            continue
        raise ConversionError(f"{where}: unknown key {name} (not a single-task TD-MPC2 / pompc "
                              "world model tensor)")
    if len(layouts) > 1:
        raise ConversionError(f"{where}: mixes the release (_Qs.params.<n>) and tensordict "
                              "(_Qs.params.<l>.<field>) names of the Q ensembles")
    for name, (target, v) in aliases.items():
        if target not in out:
            raise ConversionError(f"{where}: {name} aliases {target}, which is missing")
        if out[target] != v:
            raise ConversionError(f"{where}: {name} differs from {target}, which it aliases in "
                                  "TD-MPC2 (one storage): which one is the model's?")
    notes = []
    if ignored:
        notes.append(f"ignored {len(ignored)} tensordict records (__batch_size, __device)")
    if not any(n.startswith("_target_Qs_params.") for n in out):
        for n in [n for n in out if n.startswith("_Qs.params.")]:
            out["_target_Qs_params." + n[len("_Qs.params."):]] = out[n]
        notes.append("no target Qs in the .pt: set to a copy of the Qs (as TD-MPC2 initialises "
                     "them)")
    log_std = None
    if buffers:
        if set(buffers) != {"log_std_min", "log_std_dif"}:
            raise ConversionError(f"{where}: has {sorted(buffers)}, expected log_std_min and "
                                  "log_std_dif together")
        lo = f32_value(buffers["log_std_min"].to_f32("log_std_min"))
        dif = f32_value(buffers["log_std_dif"].to_f32("log_std_dif"))
        log_std = (lo, round_f32(lo + dif))
    layout = "release" if "release" in layouts else "tensordict"
    return out, log_std, layout, notes


# ---- pompc checkpoint ------------------------------------------------------------------------

def parse_kv(args, what):
    out = []
    for a in args:
        k, eq, v = a.partition("=")
        if not eq or not re.fullmatch(r"[a-z_][a-z0-9_]*", k):
            raise ConversionError(f"{what}: argument '{a}' is not key=value")
        out.append((k, v))
    return out


def config_record(user, dims, log_std):
    """pompc config lines: the user's key=value, then the keys the tensors fix."""
    given = {}
    for k, v in user:
        given[k] = v
    if "task" not in given:
        raise ConversionError("to-pompc needs task=NAME (the DMC task the model was trained on; "
                              "build/pompc tasks lists them)")
    if "model_size" in given:
        try:
            size = int(given["model_size"].rstrip("Mm"))
        except ValueError:
            raise ConversionError(f"model_size={given['model_size']} is not a number") from None
        if ENC_LAYERS_OF_SIZE.get(size) != dims.enc_layers:
            raise ConversionError(f"model_size={given['model_size']} has "
                                  f"{ENC_LAYERS_OF_SIZE.get(size, '?')} encoder layers, the "
                                  f".pt has {dims.enc_layers}: drop model_size= (it is inferred)")
    fixed = [("model_size", str(SIZE_OF_ENC_LAYERS[dims.enc_layers])),
             ("enc_dim", str(dims.E)), ("mlp_dim", str(dims.M)), ("latent_dim", str(dims.Z)),
             ("num_q", str(dims.Qn)), ("critic", dims.critic)]
    if log_std:
        fixed += [("log_std_min", repr(log_std[0])), ("log_std_max", repr(log_std[1]))]
    lines = [f"{k}={v}" for k, v in user]
    for k, v in fixed:
        if k in given:
            same = given[k] == v
            try:
                same = same or float(given[k]) == float(v)
            except ValueError:
                pass
            if not same and k != "model_size":
                raise ConversionError(f"{k}={given[k]} contradicts the .pt, which has {k}={v}: "
                                      f"drop {k}= (it is read from the tensors)")
            continue
        lines.append(f"{k}={v}")
    return "\n".join(lines) + "\n"


def pompc_checkpoint(model, dims, config, source):
    """Every tensor and metadata record pompc's load_checkpoint reads (trainer.cpp)."""
    table = dims.table()
    tensors = dict(model)
    n = collections.Counter()
    for name, (pset, _) in table.items():
        n[pset] += model[name].numel()
    for pset in ("model", "pi", "prior"):
        if pset == "prior" and not dims.prior:
            continue
        p = f"optim.{pset}."
        zeros = Tensor("F32", (n[pset],), bytes(4 * n[pset]))
        tensors[p + "exp_avg"] = zeros
        tensors[p + "exp_avg_sq"] = zeros
        tensors[p + "step"] = Tensor("U32", (), bytes(4))
        tensors[p + "bias_correction"] = Tensor("F32", (2,), bytes(8))
    tensors["q_scale"] = f32_scalar(1.0)
    tensors["prior_scale"] = f32_scalar(1.0)
    meta = {"format": FORMAT, "config": config}
    for key in ("updates", "agent_step", "env_step", "episodes", "eval_episodes_run",
                "next_eval", "next_checkpoint", "pretrained", "replay_episodes",
                "policy_updates", "reanalyses"):
        meta[key] = "0"
    meta.update(num_envs="1", env_episodes="0", elapsed_s="0",
                converted_from=source, converter="src/tools/tdmpc2_ckpt.py: " + FRESH_STATE)
    meta["checksum"] = checksum(tensors, meta)
    return tensors, meta


def to_pompc(src, dst, args, log=print):
    state = read_pt(src)
    model, log_std, layout, notes = from_tdmpc2(state, src)
    dims = Dims(model, src)
    dims.check(model, src)
    config = config_record(parse_kv(args, "to-pompc"), dims, log_std)
    source = f"{os.path.basename(src)} (TD-MPC2 .pt, {layout} layout)"
    tensors, meta = pompc_checkpoint(model, dims, config, source)
    write_safetensors(dst, tensors, meta)
    log(f"read {src}: {layout} layout, {len(model)} model tensors")
    for note in notes:
        log(note)
    log(f"model: O={dims.O} A={dims.A} enc_dim={dims.E} mlp_dim={dims.M} latent_dim={dims.Z} "
        f"num_q={dims.Qn} critic={dims.critic}" + (" + learned prior" if dims.prior else ""))
    log("config: " + " ".join(config.split()))
    log(f"set (not in the .pt): {FRESH_STATE}")
    log(f"wrote {dst} (checksum {meta['checksum']})")


# ---- pompc checkpoint -> TD-MPC2 state dict --------------------------------------------------

def _config_values(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def _ordered(names):
    """MLP tensor names in state_dict order: module, layer, then weight, bias, ln.*."""
    def key(name):
        m = re.fullmatch(r"(.*)\.(\d+)\.(weight|bias|ln\.weight|ln\.bias)", name)
        return (m.group(1), int(m.group(2)), FIELDS.index(m.group(3)))
    return sorted(names, key=key)


def to_tdmpc2(tensors, meta, where, layout="tensordict", aliases=True, keep_prior=False):
    """The OrderedDict TD-MPC2's model.state_dict() has, and notes on what was left out."""
    if meta.get("format") not in (FORMAT, FORMAT_V1):
        raise ConversionError(f"{where} is not a pompc checkpoint (metadata format is not "
                              f"{FORMAT} or {FORMAT_V1})")
    if "checksum" in meta:
        sum_now = checksum(tensors, meta if meta["format"] == FORMAT else None)
        if sum_now != meta["checksum"]:
            raise ConversionError(f"{where} is corrupted: its checksum is {sum_now}, the file "
                                  f"records {meta['checksum']}")
    cfg = _config_values(meta.get("config", ""))
    other = sorted(n for n in tensors if n.startswith("optim.") or n in ("q_scale",
                                                                         "prior_scale"))
    model = {n: t for n, t in tensors.items() if n not in other}
    dims = Dims(model, where)
    dims.check(model, where)
    notes = [f"not carried (a TD-MPC2 .pt holds the model only): {', '.join(other)}, the "
             "counters and the config record"]
    if dims.prior and not keep_prior:
        model = {n: t for n, t in model.items() if not n.startswith("_pi_prior.")}
        notes.append("dropped the learned prior _pi_prior.* (not in TD-MPC2's WorldModel; "
                     "keep_prior=true keeps it)")
    if dims.critic == "v":
        notes.append("critic=v: the V heads keep the Q names; TD-MPC2 cannot use them")
    out = collections.OrderedDict()
    modules = ("_encoder.state", "_dynamics", "_reward", "_pi", "_pi_prior")
    mlps = [n for mod in modules
            for n in _ordered(m for m in model if re.fullmatch(re.escape(mod) + r"\.\d+\..+", m))]
    qs = _ordered(n for n in model if n.startswith("_Qs.params."))
    targets = _ordered(n for n in model if n.startswith("_target_Qs_params."))
    batch = TorchSize((dims.Qn,))

    def ensemble(prefix, names, src_prefix):
        for n in names:
            out[prefix + n[len(src_prefix):]] = model[n]
        out[prefix + "__batch_size"] = batch
        out[prefix + "__device"] = None

    if layout == "tensordict":
        lo = round_f32(float(cfg.get("log_std_min", "-10")))
        hi = round_f32(float(cfg.get("log_std_max", "2")))
        if "log_std_min" not in cfg or "log_std_max" not in cfg:
            notes.append(f"the config record lacks log_std_min/max: wrote TD-MPC2's {lo}, {hi}")
        out["log_std_min"] = f32_scalar(lo)
        out["log_std_dif"] = f32_scalar(round_f32(hi - lo))
        for n in mlps:
            if not n.startswith("_pi_prior."):
                out[n] = model[n]
        ensemble("_Qs.params.", qs, "_Qs.params.")
        ensemble("_detach_Qs_params.", qs, "_Qs.params.")
        ensemble("_target_Qs_params.", targets, "_target_Qs_params.")
        if aliases:
            ensemble("_detach_Qs.params.", qs, "_Qs.params.")
            ensemble("_target_Qs.params.", targets, "_target_Qs_params.")
    elif layout == "release":
        for n in mlps:
            if not n.startswith("_pi_prior."):
                out[n] = model[n]
        for names, src, dst in ((qs, "_Qs.params.", "_Qs.params."),
                                (targets, "_target_Qs_params.", "_target_Qs.params.")):
            for n in names:
                layer, field = n[len(src):].split(".", 1)
                out[f"{dst}{4 * int(layer) + FIELDS.index(field)}"] = model[n]
    else:
        raise ConversionError(f"layout={layout}: must be tensordict or release")
    for n in mlps:
        if n.startswith("_pi_prior."):
            out[n] = model[n]
    return out, notes


def _bool_arg(opts, key, default):
    v = opts.pop(key, None)
    if v is None:
        return default
    if v not in ("true", "false", "1", "0"):
        raise ConversionError(f"{key}={v}: must be true or false")
    return v in ("true", "1")


def to_pt(src, dst, args, log=print):
    opts = dict(parse_kv(args, "to-pt"))
    layout = opts.pop("layout", "tensordict")
    aliases = _bool_arg(opts, "aliases", True)
    keep_prior = _bool_arg(opts, "keep_prior", False)
    if opts:
        raise ConversionError(f"to-pt: unknown keys {sorted(opts)}; valid: layout, aliases, "
                              "keep_prior")
    tensors, meta = read_safetensors(src)
    model, notes = to_tdmpc2(tensors, meta, src, layout, aliases, keep_prior)
    write_pt(dst, model)
    n = sum(isinstance(v, Tensor) for v in model.values())
    log(f"wrote {dst}: {{'model': OrderedDict}} with {n} tensors, {layout} layout"
        + (" (+ _detach_Qs.params / _target_Qs.params aliases)"
           if layout == "tensordict" and aliases else ""))
    for note in notes:
        log(note)


def show(path, log=print):
    if zipfile.is_zipfile(path):
        state = read_pt(path)
        model = state["model"] if isinstance(state, dict) and "model" in state else state
        log(f"{path}: .pt, {len(model)} entries")
        for k, v in model.items():
            log(f"  {k}: {v!r}")
    else:
        tensors, meta = read_safetensors(path)
        log(f"{path}: safetensors, {len(tensors)} tensors; metadata "
            + ", ".join(f"{k}={v!r}" for k, v in meta.items() if k != "config"))
        for k in sorted(tensors):
            log(f"  {k}: {tensors[k]!r}")


USAGE = __doc__.split("Run book")[1].split("  to-pompc")[0]


def main(argv):
    try:
        if len(argv) >= 3 and argv[0] == "to-pompc":
            to_pompc(argv[1], argv[2], argv[3:])
        elif len(argv) >= 3 and argv[0] == "to-pt":
            to_pt(argv[1], argv[2], argv[3:])
        elif len(argv) == 2 and argv[0] == "show":
            show(argv[1])
        else:
            print("usage (src/tools/tdmpc2_ckpt.py's run book):" + USAGE, file=sys.stderr)
            return 2
    except (ConversionError, OSError) as e:
        print(f"tdmpc2_ckpt: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
