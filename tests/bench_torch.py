#!/usr/bin/env python3
"""tests/bench_torch.py: the PyTorch side of issue 12's CPU comparison (make bench-torch).

    python3 tests/bench_torch.py [--threads 1] [--reps 5] [--size 5] [--no-compile]

One TD-MPC2 world-model + policy update at dog-run's dimensions (obs 223, action 38, batch 256,
horizon 3), written in PyTorch the way TD-MPC2's tdmpc2.py does it (SPEC.md states the update;
this is the same arithmetic, not TD-MPC2's code): targets from the encoder, the policy and two
random target Q heads without gradients; the latent rollout with the consistency, reward and
value losses; one backward pass, the gradient norm clipped to 20, Adam (the encoder at 0.3x the
learning rate); then the policy update against the mean of two random Q heads with the running
scale, and the Polyak average of the target heads. The 5 Q heads are one batched matmul per
layer (TD-MPC2 vmaps them); dropout 0.01 after the first Q layer; SimNorm groups of 8.

Times it eagerly and under torch.compile (inductor, default mode: the CPU configuration TD-MPC2
uses when compiled) on `--threads` threads and prints milliseconds per update. Compare with
    OMP_NUM_THREADS=1 build/bench -ts=bench -tc='*update*reference*'
which runs pompc's update at the same configuration. Needs torch (not a pompc dependency: without
it the script says so and exits 0, so `make bench-torch` stays usable on any machine).
"""

import argparse
import math
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("bench-torch: skipped (no torch in this Python: pip install torch to compare)")
    sys.exit(0)

OBS, ACT, B, H = 223, 38, 256, 3
BINS, VMIN, VMAX = 101, -10.0, 10.0
SIZES = {1: (256, 384, 128, 2), 5: (256, 512, 512, 2)}  # size: enc_dim, mlp_dim, latent, enc layers
NUM_Q, SIMNORM, DROPOUT = 5, 8, 0.01
RHO, GAMMA, TAU, CLIP, LR, ENC_LR, ENT = 0.5, 0.99, 0.01, 20.0, 3e-4, 0.3, 1e-4
LOG_STD_MIN, LOG_STD_MAX = -10.0, 2.0


class Layer(torch.nn.Module):
    """Linear, then (unless last) LayerNorm and Mish; SimNorm on the encoder's and dynamics' last."""

    def __init__(self, i, o, act):
        super().__init__()
        self.lin = torch.nn.Linear(i, o)
        self.act = act
        self.ln = torch.nn.LayerNorm(o) if act in ("mish", "simnorm") else None

    def forward(self, x):
        x = self.lin(x)
        if self.act == "mish":
            return F.mish(self.ln(x))
        if self.act == "simnorm":
            x = self.ln(x)
            s = x.shape
            return F.softmax(x.view(*s[:-1], -1, SIMNORM), dim=-1).view(s)
        return x


def mlp(i, hidden, o, last):
    dims = [i] + hidden
    layers = [Layer(a, b, "mish") for a, b in zip(dims[:-1], dims[1:])]
    return torch.nn.Sequential(*layers, Layer(dims[-1], o, last))


class QEnsemble(torch.nn.Module):
    """NUM_Q heads (Z+A -> M -> M -> BINS), each layer one batched matmul over the heads."""

    def __init__(self, i, m):
        super().__init__()

        def p(*shape, fan):
            return torch.nn.Parameter(torch.randn(*shape) / math.sqrt(fan))

        self.w = torch.nn.ParameterList([p(NUM_Q, i, m, fan=i), p(NUM_Q, m, m, fan=m),
                                         p(NUM_Q, m, BINS, fan=m)])
        self.b = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(NUM_Q, 1, d))
                                         for d in (m, m, BINS)])
        self.g = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(NUM_Q, 1, m)) for _ in (0, 1)])
        self.be = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(NUM_Q, 1, m))
                                          for _ in (0, 1)])

    def forward(self, x):  # x: (rows, i) -> (NUM_Q, rows, BINS)
        h = torch.baddbmm(self.b[0], x.unsqueeze(0).expand(NUM_Q, -1, -1), self.w[0])
        h = F.dropout(h, DROPOUT, self.training)
        h = F.mish(F.layer_norm(h, h.shape[-1:]) * self.g[0] + self.be[0])
        h = torch.baddbmm(self.b[1], h, self.w[1])
        h = F.mish(F.layer_norm(h, h.shape[-1:]) * self.g[1] + self.be[1])
        return torch.baddbmm(self.b[2], h, self.w[2])


class Model(torch.nn.Module):
    def __init__(self, size):
        super().__init__()
        enc, m, z, layers = SIZES[size]
        self.enc = mlp(OBS, [enc] * (layers - 1), z, "simnorm")
        self.dyn = mlp(z + ACT, [m, m], z, "simnorm")
        self.rew = mlp(z + ACT, [m, m], BINS, "none")
        self.pi = mlp(z, [m, m], 2 * ACT, "none")
        self.q = QEnsemble(z + ACT, m)
        self.q_target = QEnsemble(z + ACT, m)
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)


def symlog(x):
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x):
    return torch.sign(x) * torch.expm1(x.abs())


def two_hot(x):  # (rows, 1) -> (rows, BINS)
    x = symlog(x).clamp(VMIN, VMAX).squeeze(-1)
    step = (VMAX - VMIN) / (BINS - 1)
    idx = torch.floor((x - VMIN) / step)
    off = ((x - VMIN) / step - idx).unsqueeze(-1)
    idx = idx.long().unsqueeze(-1)
    out = torch.zeros(x.shape[0], BINS)
    out.scatter_(1, idx, 1 - off)
    out.scatter_(1, (idx + 1) % BINS, off)
    return out


BIN_VALUES = torch.linspace(VMIN, VMAX, BINS)


def two_hot_inv(logits):
    return symexp((F.softmax(logits, -1) * BIN_VALUES).sum(-1, keepdim=True))


def soft_ce(logits, target):
    return -(two_hot(target) * F.log_softmax(logits, -1)).sum(-1, keepdim=True)


def pi_sample(model, z):
    mu, log_std = model.pi(z).chunk(2, -1)
    log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
    eps = torch.randn_like(mu)
    a = mu + eps * log_std.exp()
    log_pi = (-0.5 * eps.pow(2) - log_std).sum(-1, keepdim=True) - 0.5 * math.log(2 * math.pi) * ACT
    a = torch.tanh(a)
    log_pi = log_pi - torch.log(F.relu(1 - a.pow(2)) + 1e-6).sum(-1, keepdim=True)
    return a, log_pi * ACT


def two_random_heads(qs):
    idx = torch.randperm(NUM_Q)[:2]
    return qs[idx]


def update(model, optim, pi_optim, scale, obs, action, reward):
    """obs (H+1, B, OBS), action (H, B, ACT), reward (H, B, 1); returns the total loss."""
    with torch.no_grad():
        next_z = model.enc(obs[1:])
        a, _ = pi_sample(model, next_z)
        q = two_hot_inv(two_random_heads(model.q_target(torch.cat([next_z, a], -1).view(-1, next_z.shape[-1] + ACT))))
        td = reward + GAMMA * q.min(0).values.view(H, B, 1)
    model.train()
    z = model.enc(obs[0])
    zs = [z]
    consistency = 0.0
    for t in range(H):
        z = model.dyn(torch.cat([z, action[t]], -1))
        consistency = consistency + F.mse_loss(z, next_z[t]) * RHO ** t
        zs.append(z)
    zl = torch.stack(zs[:-1])
    za = torch.cat([zl, action], -1).view(H * B, -1)
    qs = model.q(za).view(NUM_Q, H, B, BINS)
    rew = model.rew(za).view(H, B, BINS)
    reward_loss = value_loss = 0.0
    for t in range(H):
        reward_loss = reward_loss + soft_ce(rew[t], reward[t]).mean() * RHO ** t
        for k in range(NUM_Q):
            value_loss = value_loss + soft_ce(qs[k, t], td[t]).mean() * RHO ** t
    total = (20 * consistency + 0.1 * reward_loss + 0.1 * value_loss) / H
    total.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    optim.step()
    optim.zero_grad(set_to_none=True)
    # Policy update on the detached latents.
    zp = torch.stack(zs).detach()
    a, log_pi = pi_sample(model, zp)
    model.q.requires_grad_(False)
    q = two_hot_inv(two_random_heads(model.q(torch.cat([zp, a], -1).view(-1, zp.shape[-1] + ACT))))
    model.q.requires_grad_(True)
    q = q.mean(0).view(H + 1, B, 1)
    with torch.no_grad():
        p = torch.quantile(q[0].flatten(), torch.tensor([0.05, 0.95]))
        scale.lerp_((p[1] - p[0]).clamp_min(1.0), TAU)
    q = q / scale
    rho = torch.pow(RHO, torch.arange(H + 1, dtype=torch.float32))
    pi_loss = (-(ENT * log_pi + q).mean(dim=(1, 2)) * rho).mean()
    pi_loss.backward()
    torch.nn.utils.clip_grad_norm_(model.pi.parameters(), CLIP)
    pi_optim.step()
    pi_optim.zero_grad(set_to_none=True)
    with torch.no_grad():
        torch._foreach_lerp_(list(model.q_target.parameters()), list(model.q.parameters()), TAU)
    return total.detach()


def bench(size, compiled, reps):
    torch.manual_seed(1)
    model = Model(size)
    groups = [{"params": model.enc.parameters(), "lr": LR * ENC_LR},
              {"params": [p for n, p in model.named_parameters()
                          if not n.startswith(("enc.", "pi.", "q_target."))]}]
    optim = torch.optim.Adam(groups, lr=LR)
    pi_optim = torch.optim.Adam(model.pi.parameters(), lr=LR, eps=1e-5)
    scale = torch.ones(())
    obs = torch.randn(H + 1, B, OBS)
    action = torch.rand(H, B, ACT) * 2 - 1
    reward = torch.rand(H, B, 1)
    step = torch.compile(update) if compiled else update
    for _ in range(3):  # warm-up (and compilation)
        step(model, optim, pi_optim, scale, obs, action, reward)
    t0 = time.perf_counter()
    for _ in range(reps):
        step(model, optim, pi_optim, scale, obs, action, reward)
    return (time.perf_counter() - t0) / reps * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size", type=int, default=5, choices=sorted(SIZES))
    ap.add_argument("--no-compile", action="store_true", help="time the eager update only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for compiled in (False,) if args.no_compile else (False, True):
        ms = bench(args.size, compiled, args.reps)
        print(f"bench-torch: update dog {args.size}M B={B} H={H} (torch {torch.__version__}, "
              f"{'torch.compile' if compiled else 'eager'}, {args.threads} threads): {ms:.2f} ms")


if __name__ == "__main__":
    main()
