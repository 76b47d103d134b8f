#!/usr/bin/env python3
"""tests/test_convert.py: src/tools/tdmpc2_ckpt.py, TD-MPC2 .pt <-> pompc checkpoints.

    python3 tests/test_convert.py build/pompc [unittest options]      (make test-convert)

Standard library only. On a real checkpoint of a tiny pompc run (trained here, in a temporary
directory, by the pompc binary named on the command line): safetensors -> pt -> safetensors
gives bit-identical model tensors in each layout; the .pt our writer makes is read back by our
reader and has torch's zip layout; .pt files made by hand the way torch.save makes them
(Python's own pickler with stand-in torch globals: memo opcodes, a non-contiguous view, a
shared storage, OrderedDict._metadata, torch.Size and torch.device records, another archive
name) convert to checkpoints that `pompc eval` accepts with the original's returns; malicious
pickles are refused before anything runs; the format alone (shapes, the integer opcodes,
float16 / bfloat16 widening) needs no binary. With torch installed, torch.load(weights_only=True)
reads our .pt and our reader reads torch.save's; without torch those tests are skipped.
"""

import collections
import contextlib
import importlib.util
import io
import os
import pickle
import pickletools
import re
import struct
import subprocess
import sys
import tempfile
import types
import unittest
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "src", "tools", "tdmpc2_ckpt.py")
_spec = importlib.util.spec_from_file_location("tdmpc2_ckpt", TOOL)
ck = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ck)

try:
    import torch  # noqa: F401  (only the cross-checks use it)
    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False

POMPC = os.path.join(ROOT, "build", "pompc")  # replaced by the first command-line argument
ENV = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="passive")
# A tiny TD-MPC2 run: a random seed phase, the pretraining burst, one planned episode (~4 s).
TRAIN_ARGS = ["preset=tdmpc2", "task=cartpole-balance", "steps=3000", "seed_steps=1000",
              "eval_episodes=1", "model_size=1", "enc_dim=32", "mlp_dim=32", "latent_dim=16",
              "batch_size=16", "iterations=2", "num_samples=32", "num_elites=8",
              "num_pi_trajs=4", "device=cpu"]


def run(cmd, timeout=120):
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return p.stdout


def eval_returns(ckpt):
    """The per-episode return lines of `pompc eval` (two episodes)."""
    out = run([POMPC, "eval", f"checkpoint={ckpt}", "episodes=2"])
    lines = re.findall(r"episode \d+ return \S+", out)
    if len(lines) != 2:
        raise AssertionError(f"pompc eval printed no episode returns:\n{out}")
    return lines


def model_tensors(tensors):
    return {k: v for k, v in tensors.items()
            if not k.startswith("optim.") and k not in ("q_scale", "prior_scale")}


# ---- .pt files made the way torch.save makes them, without torch ------------------------------

@contextlib.contextmanager
def stand_in_torch():
    """Modules named torch and torch._utils with the globals torch.save writes, so that Python's
    own pickler (which checks each global by importing it) writes a pickle as torch does."""
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    t = types.ModuleType("torch")
    u = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called: only pickled")
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    u._rebuild_tensor_v2 = _rebuild_tensor_v2

    class FloatStorage:
        pass

    class Size(tuple):
        def __reduce__(self):
            return (Size, (tuple(self),))

    class device:  # noqa: N801 (torch's name)
        def __init__(self, type, index=None):
            self.type, self.index = type, index

        def __reduce__(self):
            return (device, (self.type, self.index))

    for cls in (FloatStorage, Size, device):
        cls.__module__, cls.__qualname__ = "torch", cls.__name__
        setattr(t, cls.__name__, cls)
    t._utils = u
    sys.modules["torch"], sys.modules["torch._utils"] = t, u
    try:
        yield t
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class StorageRef:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class ViewRef:
    """A tensor as torch pickles it: _rebuild_tensor_v2(storage, offset, size, stride, False,
    OrderedDict())."""

    def __init__(self, fake, storage, offset, size, stride):
        self.fake, self.args = fake, (storage, offset, tuple(size), tuple(stride))

    def __reduce_ex__(self, protocol):
        storage, offset, size, stride = self.args
        return (self.fake._utils._rebuild_tensor_v2,
                (storage, offset, size, stride, False, collections.OrderedDict()))


def handmade_pt(path, state_items, archive="archive", odd_views=()):
    """A .pt as torch.save({"model": state_dict}) writes it, by Python's pickler (protocol 2,
    memoised) with stand-in torch globals. state_items: (name, ck.Tensor | "size:N" | "device").
    Tensors named in odd_views are stored transposed (a non-contiguous view); _pi.2.weight and
    _pi.2.bias share one storage (the bias at an offset)."""
    storages = {}
    with stand_in_torch() as fake:
        state = collections.OrderedDict()
        state._metadata = collections.OrderedDict([("", {"version": 1})])
        shared = None
        for name, v in state_items:
            if v == "device":
                state[name] = fake.device("cuda", 0)
            elif isinstance(v, str):
                state[name] = fake.Size([int(v.split(":")[1])])
            elif name in odd_views and len(v.shape) == 2:
                rows, cols = v.shape
                vals = struct.unpack(f"<{rows * cols}f", v.data)
                transposed = [vals[r * cols + c] for c in range(cols) for r in range(rows)]
                key = str(len(storages))
                storages[key] = struct.pack(f"<{rows * cols}f", *transposed)
                state[name] = ViewRef(fake, StorageRef(key, rows * cols), 0, v.shape, (1, rows))
            elif name in ("_pi.2.weight", "_pi.2.bias"):
                if shared is None:
                    shared = str(len(storages))
                    w, b = dict(state_items)["_pi.2.weight"], dict(state_items)["_pi.2.bias"]
                    storages[shared] = w.data + b.data
                    shared_ref = StorageRef(shared, w.numel() + b.numel())
                    w_numel = w.numel()
                offset = 0 if name == "_pi.2.weight" else w_numel
                state[name] = ViewRef(fake, shared_ref, offset, v.shape,
                                      ck._contiguous_strides(v.shape))
            else:
                key = str(len(storages))
                storages[key] = v.data
                state[name] = ViewRef(fake, StorageRef(key, v.numel()), 0, v.shape,
                                      ck._contiguous_strides(v.shape))

        class Pickler(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, StorageRef):
                    return ("storage", fake.FloatStorage, obj.key, "cuda:0", obj.numel)
                return None

        buf = io.BytesIO()
        Pickler(buf, protocol=2).dump({"model": state})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{archive}/data.pkl", buf.getvalue())
        z.writestr(f"{archive}/byteorder", "little")
        for key, data in storages.items():
            z.writestr(f"{archive}/data/{key}", data)
        z.writestr(f"{archive}/version", "3\n")


def tdmpc2_items(model, log_std=(-10.0, 2.0)):
    """TD-MPC2's model.state_dict() (tensordict layout, as world_model.py at 13ef0039 builds
    it) from pompc's tensors, in state_dict order."""
    items = [("log_std_min", ck.f32_scalar(log_std[0])),
             ("log_std_dif", ck.f32_scalar(log_std[1] - log_std[0]))]
    for mod in ("_encoder.state", "_dynamics", "_reward", "_pi"):
        items += [(n, model[n]) for n in ck._ordered(
            k for k in model if re.fullmatch(re.escape(mod) + r"\.\d+\..+", k))]
    qs = ck._ordered(k for k in model if k.startswith("_Qs.params."))
    tq = ck._ordered(k for k in model if k.startswith("_target_Qs_params."))
    qn = model["_Qs.params.0.weight"].shape[0]
    for prefix, names, src in (("_Qs.params.", qs, "_Qs.params."),
                               ("_detach_Qs_params.", qs, "_Qs.params."),
                               ("_target_Qs_params.", tq, "_target_Qs_params.")):
        items += [(prefix + n[len(src):], model[n]) for n in names]
        items += [(prefix + "__batch_size", f"size:{qn}"), (prefix + "__device", "device")]
    return items


def release_items(model):
    """TD-MPC2's first release: the ensembles as parameter lists _Qs.params.<4 l + k>."""
    items = [(n, t) for n, t in model.items()
             if not n.startswith(("_Qs.params.", "_target_Qs_params."))]
    for src, dst in (("_Qs.params.", "_Qs.params."), ("_target_Qs_params.", "_target_Qs.params.")):
        for n in ck._ordered(k for k in model if k.startswith(src)):
            layer, field = n[len(src):].split(".", 1)
            items.append((f"{dst}{4 * int(layer) + ck.FIELDS.index(field)}", model[n]))
    return items


# ---- tests on a real pompc checkpoint ---------------------------------------------------------

class RealCheckpoint(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(POMPC, os.X_OK):
            raise RuntimeError(f"{POMPC} is not an executable: build it (make build/pompc) or "
                               "pass its path: python3 tests/test_convert.py PATH")
        cls.tmp = tempfile.TemporaryDirectory(prefix="pompc-convert-")
        cls.dir = cls.tmp.name
        run([POMPC, "train", *TRAIN_ARGS, f"run_dir={cls.dir}/run"])
        cls.ckpt = os.path.join(cls.dir, "run", "checkpoint.safetensors")
        cls.tensors, cls.meta = ck.read_safetensors(cls.ckpt)
        cls.model = model_tensors(cls.tensors)
        cls.returns = eval_returns(cls.ckpt)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def check_converted(self, ckpt):
        """The converted checkpoint's model is the original's bit for bit; what a .pt lacks is
        a fresh optimizer; the checksum is pompc's."""
        tensors, meta = ck.read_safetensors(ckpt)
        self.assertEqual(model_tensors(tensors), self.model)
        self.assertEqual(set(tensors), set(self.tensors))
        for name, t in tensors.items():
            if name.startswith("optim."):
                self.assertFalse(t.data.strip(b"\0"), f"{name} is not zero")
                self.assertEqual((t.dtype, t.shape), (self.tensors[name].dtype,
                                                      self.tensors[name].shape))
        self.assertEqual(ck.f32_value(tensors["q_scale"]), 1.0)
        self.assertEqual(meta["format"], "pompc-checkpoint-2")
        self.assertEqual(meta["checksum"], ck.checksum(tensors, meta))
        self.assertEqual(meta["updates"], "0")
        return tensors, meta

    def test_checksum_matches_pompc(self):
        self.assertEqual(self.meta["format"], "pompc-checkpoint-2")
        self.assertEqual(ck.checksum(self.tensors, self.meta), self.meta["checksum"])
        # Format 2 covers the metadata: one changed counter changes the checksum.
        self.assertNotEqual(ck.checksum(self.tensors, dict(self.meta, updates=self.meta["updates"] + "7")),
                            self.meta["checksum"])

    def test_round_trip_through_pt_is_bit_identical(self):
        for layout, aliases in (("tensordict", "true"), ("tensordict", "false"),
                                ("release", "true")):
            with self.subTest(layout=layout, aliases=aliases):
                pt, back = self.path(f"rt-{layout}-{aliases}.pt"), self.path("rt.safetensors")
                ck.to_pt(self.ckpt, pt, [f"layout={layout}", f"aliases={aliases}"],
                         log=lambda s: None)
                ck.to_pompc(pt, back, TRAIN_ARGS, log=lambda s: None)
                self.check_converted(back)

    def test_cli_round_trip_evaluates_identically(self):
        pt, back = self.path("cli.pt"), self.path("cli.safetensors")
        out = run([sys.executable, TOOL, "to-pt", self.ckpt, pt])
        self.assertIn("not carried", out)
        self.assertIn("optim.model.exp_avg", out)
        out = run([sys.executable, TOOL, "to-pompc", pt, back, *TRAIN_ARGS])
        self.assertIn("Adam moments 0", out)
        self.assertIn("log_std_min=-10.0", out)
        _, meta = self.check_converted(back)
        self.assertIn("num_q=2", meta["config"])
        self.assertEqual(eval_returns(back), self.returns)

    def test_learned_prior_kept_on_request(self):
        """PO-MPC's pi_psi (_pi_prior.*, pi's layout) leaves with keep_prior=true only."""
        tensors = dict(self.tensors)
        for name in [n for n in tensors if n.startswith("_pi.")]:
            t = tensors[name]
            tensors["_pi_prior." + name[4:]] = ck.Tensor("F32", t.shape, t.data[::-1])
        for name in [n for n in tensors if n.startswith("optim.pi.")]:
            tensors["optim.prior." + name[9:]] = tensors[name]
        meta = dict(self.meta)
        meta["checksum"] = ck.checksum(tensors, meta)
        for keep in (False, True):
            with self.subTest(keep_prior=keep):
                model, notes = ck.to_tdmpc2(tensors, meta, "prior", keep_prior=keep)
                pt = self.path(f"prior-{keep}.pt")
                ck.write_pt(pt, model)
                back, _, _, _ = ck.from_tdmpc2(ck.read_pt(pt), pt)
                want = {n: t for n, t in model_tensors(tensors).items()
                        if keep or not n.startswith("_pi_prior.")}
                self.assertEqual(back, want)
                self.assertEqual(any("dropped the learned prior" in n for n in notes), not keep)
                self.assertEqual(ck.Dims(back, pt).prior, keep)

    def test_writer_output_read_back_and_laid_out_as_torch(self):
        model, notes = ck.to_tdmpc2(self.tensors, self.meta, self.ckpt)
        pt = self.path("w.pt")
        ck.write_pt(pt, model)
        back = ck.read_pt(pt)
        self.assertEqual(list(back), ["model"])
        self.assertEqual(list(back["model"]), list(model))
        for name, v in model.items():
            self.assertEqual(back["model"][name], v, name)
        self.assertEqual(back["model"]["_Qs.params.__batch_size"], (2,))
        self.assertIsNone(back["model"]["_target_Qs_params.__device"])
        self.assertEqual(ck.f32_value(back["model"]["log_std_dif"]), 12.0)
        with zipfile.ZipFile(pt) as z:
            names = z.namelist()
            self.assertEqual(names[:2], ["archive/data.pkl", "archive/byteorder"])
            self.assertEqual(names[-1], "archive/version")
            self.assertEqual(z.read("archive/version"), b"3\n")
            self.assertEqual(z.read("archive/byteorder"), b"little")
            distinct = {id(v) for v in model.values() if isinstance(v, ck.Tensor)}
            self.assertEqual(sum(n.startswith("archive/data/") for n in names), len(distinct))
            for info in z.infolist():  # torch aligns every record's bytes to 64
                self.assertEqual(info.compress_type, zipfile.ZIP_STORED)
                self.assertEqual((info.header_offset + 30 + len(info.filename)
                                  + len(info.extra)) % 64, 0, info.filename)
            pkl = z.read("archive/data.pkl")
        ops = [op.name for op, _, _ in pickletools.genops(pkl)]
        self.assertEqual((ops[0], ops[-1]), ("PROTO", "STOP"))
        pickletools.dis(pkl, out=io.StringIO())  # checks the stack and marks of every opcode

    def test_handmade_tdmpc2_pt_evaluates_as_the_original(self):
        pt, out = self.path("dog-run-1.pt"), self.path("handmade.safetensors")
        handmade_pt(pt, tdmpc2_items(self.model), archive="dog-run-1",
                    odd_views=("_encoder.state.0.weight", "_dynamics.1.weight"))
        ck.to_pompc(pt, out, TRAIN_ARGS, log=lambda s: None)
        self.check_converted(out)
        self.assertEqual(eval_returns(out), self.returns)

    def test_handmade_release_pt(self):
        pt, out = self.path("release.pt"), self.path("release.safetensors")
        handmade_pt(pt, release_items(self.model))
        lines = []
        ck.to_pompc(pt, out, TRAIN_ARGS, log=lines.append)
        self.assertIn("release layout", lines[0])
        self.check_converted(out)
        # without target Qs: they start as a copy of the Qs
        handmade_pt(pt, [(n, t) for n, t in release_items(self.model)
                         if not n.startswith("_target_Qs.")])
        lines = []
        ck.to_pompc(pt, out, TRAIN_ARGS, log=lines.append)
        self.assertTrue(any("no target Qs" in line for line in lines), lines)
        tensors, _ = ck.read_safetensors(out)
        for n, t in self.model.items():
            if n.startswith("_target_Qs_params."):
                self.assertEqual(tensors[n], self.model["_Qs.params." + n[18:]])

    def test_refusals_name_the_fix(self):
        pt = self.path("r.pt")
        cases = [
            (tdmpc2_items(self.model) + [("_task_emb.weight", ck.f32_scalar(0))], TRAIN_ARGS,
             "multi-task"),
            (tdmpc2_items(self.model), [a for a in TRAIN_ARGS if not a.startswith("task=")],
             "needs task="),
            (tdmpc2_items(self.model), TRAIN_ARGS + ["enc_dim=64"], "enc_dim=64 contradicts"),
            (tdmpc2_items(self.model), TRAIN_ARGS + ["model_size=19"], "drop model_size="),
            ([(n, v) for n, v in tdmpc2_items(self.model) if n != "_reward.1.bias"], TRAIN_ARGS,
             "missing _reward.1.bias"),
            ([(n, v) if n != "_detach_Qs_params.0.bias" else (n, ck.Tensor(
                "F32", v.shape, bytes(len(v.data)))) for n, v in tdmpc2_items(self.model)],
             TRAIN_ARGS, "differs from _Qs.params.0.bias"),
        ]
        for items, args, message in cases:
            with self.subTest(message=message):
                handmade_pt(pt, items)
                with self.assertRaisesRegex(ck.ConversionError, re.escape(message)):
                    ck.to_pompc(pt, self.path("r.safetensors"), args, log=lambda s: None)
        broken = self.path("broken.safetensors")
        with open(self.ckpt, "rb") as f:
            data = bytearray(f.read())
        data[-1] ^= 1
        with open(broken, "wb") as f:
            f.write(data)
        with self.assertRaisesRegex(ck.ConversionError, "corrupted"):
            ck.to_pt(broken, pt, [], log=lambda s: None)

    @unittest.skipUnless(HAVE_TORCH, "torch is not installed")
    def test_torch_loads_our_pt_and_we_load_torch_save(self):
        import torch
        pt = self.path("t.pt")
        ck.to_pt(self.ckpt, pt, [], log=lambda s: None)
        state = torch.load(pt, weights_only=True)["model"]
        ours = ck.read_pt(pt)["model"]
        self.assertEqual(list(state), list(ours))
        for name, v in ours.items():
            if isinstance(v, ck.Tensor):
                t = state[name]
                self.assertEqual(t.dtype, torch.float32)
                self.assertEqual(tuple(t.shape), v.shape)
                flat = t.contiguous().view(-1).tolist()
                self.assertEqual(struct.pack(f"<{len(flat)}f", *flat), v.data, name)
            else:
                self.assertEqual(state[name], v if v is None else torch.Size(v))
        state["_encoder.state.0.weight"] = state["_encoder.state.0.weight"].t().contiguous().t()
        saved = self.path("torch.pt")
        torch.save({"model": state}, saved)
        back = self.path("torch.safetensors")
        ck.to_pompc(saved, back, TRAIN_ARGS, log=lambda s: None)
        self.check_converted(back)


# ---- the format alone ---------------------------------------------------------------------------

class Format(unittest.TestCase):
    def test_writer_reader_shapes_and_int_opcodes(self):
        """0-d, 4-d (MARK ... TUPLE) and 70000-element (BININT) tensors, Size, None."""
        def f32(shape):
            n = 1
            for d in shape:
                n *= d
            return ck.Tensor("F32", shape, struct.pack(f"<{n}f", *(i * 0.5 - 3 for i in range(n))))
        model = collections.OrderedDict(
            [("a", f32(())), ("b", f32((2, 3, 4, 5))), ("c", f32((70000,))),
             ("d.__batch_size", ck.TorchSize((70000,))), ("d.__device", None)])
        with tempfile.TemporaryDirectory() as d:
            pt = os.path.join(d, "x.pt")
            ck.write_pt(pt, model)
            self.assertEqual(ck.read_pt(pt), {"model": model})

    def test_half_and_bfloat16_widen_exactly(self):
        values = [0.0, -2.5, 1.0 / 1024, 49152.0]  # exact in float16 and bfloat16
        half = ck.Tensor("F16", (4,), struct.pack("<4e", *values))
        self.assertEqual(struct.unpack("<4f", half.to_f32("h").data), tuple(values))
        bf16 = ck.Tensor("BF16", (4,), b"".join(struct.pack("<f", v)[2:] for v in values))
        self.assertEqual(struct.unpack("<4f", bf16.to_f32("b").data), tuple(values))
        with self.assertRaisesRegex(ck.ConversionError, "is F64: pompc holds float32"):
            ck.Tensor("F64", (1,), bytes(8)).to_f32("d")


# ---- the restricted unpickler ------------------------------------------------------------------

CANARY = os.path.join(tempfile.gettempdir(), f"pompc-convert-canary-{os.getpid()}")


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {CANARY}",))


class EvalEvil:
    def __reduce__(self):
        return (eval, (f"open({CANARY!r}, 'w')",))


def zip_with_pickle(path, payload, storages=None):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        for key, data in (storages or {}).items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", "3\n")


class MaliciousPickles(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="pompc-evil-")
        self.pt = os.path.join(self.tmp.name, "evil.pt")
        if os.path.exists(CANARY):
            os.unlink(CANARY)

    def tearDown(self):
        self.tmp.cleanup()
        self.assertFalse(os.path.exists(CANARY), "a malicious pickle ran code")

    def refused(self, payload, message="refusing", storages=None):
        zip_with_pickle(self.pt, payload, storages)
        with self.assertRaisesRegex(ck.ConversionError, message):
            ck.read_pt(self.pt)
        with self.assertRaises(ck.ConversionError):
            ck.to_pompc(self.pt, self.pt + ".safetensors", ["task=cartpole-balance"],
                        log=lambda s: None)

    def test_os_system(self):
        for protocol in (2, 4, 5):
            with self.subTest(protocol=protocol):
                self.refused(pickle.dumps({"model": Evil()}, protocol=protocol),
                             r"refusing to load global (posix|os|nt)\.system")

    def test_builtins_eval(self):
        self.refused(pickle.dumps(EvalEvil(), protocol=4), r"builtins\.eval")

    def test_arbitrary_class(self):
        self.refused(pickle.dumps({"model": collections.OrderedDict(x=Evil)}, protocol=2),
                     r"refusing to load global __main__\.Evil|refusing to load global \S+Evil")

    def test_other_torch_functions(self):
        payload = (b"\x80\x02ctorch._utils\n_rebuild_device_tensor_from_numpy\n"
                   b"(K\x00tR.")
        self.refused(payload, r"torch\._utils\._rebuild_device_tensor_from_numpy")
        self.refused(b"\x80\x02ctorch\nload\nX\x01\x00\x00\x00xR.", r"torch\.load")

    def test_persistent_ids(self):
        bad = [b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x06\x00\x00\x00../../"
               b"X\x03\x00\x00\x00cpuK\x01tQ.",
               b"(X\x06\x00\x00\x00modulectorch\nFloatStorage\nX\x01\x00\x00\x000"
               b"X\x03\x00\x00\x00cpuK\x01tQ.",
               b"X\x01\x00\x00\x000Q."]
        for payload in bad:
            with self.subTest(payload=payload):
                self.refused(b"\x80\x02" + payload, "refusing persistent id")

    def test_storage_size_mismatch(self):
        payload = (b"\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000"
                   b"X\x03\x00\x00\x00cpuK\x04tQ.")
        self.refused(payload, "persistent id says 16", storages={"0": b"\0" * 8})

    def test_view_past_storage(self):
        payload = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n("
                   b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000"
                   b"X\x03\x00\x00\x00cpuK\x02tQK\x01K\x02\x85K\x01\x85\x89"
                   b"ccollections\nOrderedDict\n)RtR.")
        self.refused(payload, "reaches past its storage", storages={"0": b"\0" * 8})

    def test_not_a_zip(self):
        with open(self.pt, "wb") as f:
            f.write(pickle.dumps({"model": {}}, protocol=2))
        with self.assertRaisesRegex(ck.ConversionError, "not a zip archive"):
            ck.read_pt(self.pt)


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        POMPC = os.path.abspath(sys.argv.pop(1))
    unittest.main()
