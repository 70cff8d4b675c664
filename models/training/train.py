"""Trains the project's own plate reader (a small CRNN with CTC) on the CPU.

    python train.py                      # defaults: the committed model's recipe
    python train.py --steps 200 --out /tmp/x.onnx   # a quick smoke run

Steps: (1) render the synthetic data set (plates.py) with a fixed seed, cached
under .cache/ keyed by seed and size; (2) train with torch on one thread for a
fixed number of steps; (3) export to ONNX (opset 17, input [N,1,32,128]
float32 in -1..1, output [N,32,37] softmax over blank + A-Z + 0-9) and check
the export against torch with onnxruntime; (4) print the sha256 and the
figures on the held-out synthetic set.

Everything random is seeded from --seed: the data (per sample), torch's
initialisation and the batch order. On one thread the run is deterministic.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import time

import numpy as np

import plates

HERE = os.path.dirname(os.path.abspath(__file__))


def build_data(seed: int, count: int, workers: int, cache: str):
    path = os.path.join(cache, f"plates-s{seed}-n{count}-v1.npz")
    if os.path.exists(path):
        z = np.load(path)
        return z["x"], list(z["y"])
    os.makedirs(cache, exist_ok=True)
    chunk = 500
    jobs = [(seed, s, min(chunk, count - s)) for s in range(0, count, chunk)]
    t = time.time()
    with mp.get_context("fork").Pool(workers) as pool:
        parts = pool.map(plates.make_batch, jobs)
    x = np.concatenate([p[0] for p in parts])
    y = [l for p in parts for l in p[1]]
    print(f"rendered {count} samples (seed {seed}) in {time.time() - t:.0f} s", flush=True)
    np.savez(path, x=x, y=np.array(y))
    return x, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=20261130)
    ap.add_argument("--train", type=int, default=40000, help="training samples rendered")
    ap.add_argument("--val", type=int, default=2000, help="held-out samples (own seed)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--workers", type=int, default=2, help="processes rendering data")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "plate_crnn.onnx"))
    ap.add_argument("--cache", default=os.path.join(HERE, ".cache"))
    args = ap.parse_args()

    plates.check_fonts()
    t0 = time.time()
    xtr, ytr = build_data(args.seed, args.train, args.workers, args.cache)
    xva, yva = build_data(args.seed + 1, args.val, args.workers, args.cache)
    t_data = time.time() - t0

    import torch

    from model import PlateCRNN, ctc_targets, greedy_decode

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = PlateCRNN()
    print(f"parameters: {sum(p.numel() for p in model.parameters())}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)

    xtr_t = torch.from_numpy(xtr)

    def augment(xb: torch.Tensor) -> torch.Tensor:
        # Cheap extra variety on top of the rendered degradations: a shift of a
        # few pixels (corner error), contrast and inversion-free brightness.
        n = xb.shape[0]
        xb = xb.float() / 127.5 - 1.0
        dx = int(rng.integers(-4, 5))
        dy = int(rng.integers(-2, 3))
        xb = torch.roll(xb, shifts=(dy, dx), dims=(1, 2))
        c = torch.from_numpy(rng.uniform(0.6, 1.2, (n, 1, 1)).astype(np.float32))
        b = torch.from_numpy(rng.uniform(-0.2, 0.2, (n, 1, 1)).astype(np.float32))
        return (xb * c + b).clamp(-1, 1).unsqueeze(1)

    t1 = time.time()
    model.train()
    for step in range(args.steps):
        idx = rng.integers(0, len(ytr), args.batch)
        xb = augment(xtr_t[idx])
        targets, lengths = ctc_targets([ytr[i] for i in idx])
        logp = model.log_probs(xb)  # [T, N, C]
        in_len = torch.full((xb.shape[0],), logp.shape[0], dtype=torch.long)
        loss = ctc(logp, targets, in_len, lengths)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f} {time.time() - t1:.0f} s", flush=True)
    t_train = time.time() - t1

    model.eval()
    with torch.no_grad():
        xv = torch.from_numpy(xva).float().div(127.5).sub(1.0).unsqueeze(1)
        probs = torch.cat([model(xv[i : i + 256]) for i in range(0, len(xv), 256)])
    reads = greedy_decode(probs.numpy())
    exact = sum(r == y for r, y in zip(reads, yva)) / len(yva)
    nl = [(r, y) for r, y in zip(reads, yva) if len(y) == 6]
    print(f"held-out synthetic exact (greedy): {exact:.4f} on {len(yva)}; six-char plates {sum(r == y for r, y in nl) / max(1, len(nl)):.4f} on {len(nl)}")

    # Export: batch is dynamic, the rest fixed.
    dummy = torch.zeros(1, 1, plates.INPUT_H, plates.INPUT_W)
    torch.onnx.export(
        model, (dummy,), args.out, input_names=["image"], output_names=["probs"],
        dynamic_axes={"image": {0: "n"}, "probs": {0: "n"}}, opset_version=17, dynamo=False,
    )
    import onnxruntime as ort

    sess = ort.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    ox = sess.run(None, {"image": xv[:64].numpy()})[0]
    diff = float(np.abs(ox - probs[:64].numpy()).max())
    print(f"onnx vs torch max abs diff: {diff:.2e}")
    assert diff < 1e-3, "export disagrees with torch"
    digest = hashlib.sha256(open(args.out, "rb").read()).hexdigest()
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes) sha256 {digest}")
    print(f"time: data {t_data:.0f} s, training {t_train:.0f} s, total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
