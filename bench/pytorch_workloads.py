"""norbvae's PyTorch reference workloads for `norbvae bench`: the same two VAEs, trained on CPU.

conv: 64x64x1 images, batch 64. Encoder: 6 stride-2 convolutions (kernel 4, padding 1) with
      16, 32, 64, 128, 256, 512 filters, each + batch norm + ReLU; dense 512 -> 256 + batch norm +
      ReLU; latent 10 (mean and log-variance heads). Decoder: dense 10 -> 256 + batch norm + ReLU,
      256 -> 512 + ReLU, then 6 mirrored ConvTranspose2d (batch norm + ReLU after all but the last).
      Loss: binary cross-entropy with logits (summed) + KL, per image. Adam, lr 1e-3.
mlp:  500-d inputs, batch 128. Encoder: 4 x (Linear 512 + batch norm + ReLU), latent 128; decoder
      mirrored with a final Linear 512 -> 500. Loss: squared error (summed) + KL, per sample.
      Adam, lr 1e-3.

Each workload runs 5 untimed warm-up steps, then 30 timed full training steps (forward, backward,
Adam) on one fixed random batch, and prints one line per (workload, thread count):
    torch conv threads=1 B=64: 291 samples/s loss 2915.3 -> 2804.1
`norbvae bench` parses these lines; keep the format. Timing uses time.perf_counter, looked up at
call time, so `norbvae bench --cpu-time` can swap in time.process_time.

Usage: python bench/pytorch_workloads.py [threads ...]      (default: 1 2)
Needs torch, e.g. in a venv: python3 -m venv .venv-torch && .venv-torch/bin/pip install torch
"""
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.exit(
        "pytorch_workloads.py needs torch: python3 -m venv .venv-torch && "
        ".venv-torch/bin/pip install torch, then norbvae bench --python .venv-torch/bin/python"
    )

WARMUP_STEPS = 5
TIMED_STEPS = 30


def kl_divergence(mu, logvar):
    """KL(q(z|x) || N(0, I)) summed over latents and batch."""
    return 0.5 * (mu**2 + logvar.exp() - logvar - 1).sum()


def reparameterize(mu, logvar):
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


class ConvVAE(nn.Module):
    """The conv workload (norbvae's kernels::workloads::Workload::Conv)."""

    def __init__(self):
        super().__init__()
        enc_ch = [1, 16, 32, 64, 128, 256, 512]
        layers = []
        for i in range(6):
            layers += [nn.Conv2d(enc_ch[i], enc_ch[i + 1], 4, 2, 1), nn.BatchNorm2d(enc_ch[i + 1]), nn.ReLU()]
        self.encoder = nn.Sequential(
            *layers, nn.Flatten(), nn.Linear(512, 256), nn.BatchNorm1d(256), nn.ReLU()
        )
        self.mu = nn.Linear(256, 10)
        self.logvar = nn.Linear(256, 10)
        self.dense_decoder = nn.Sequential(
            nn.Linear(10, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU()
        )
        dec_ch = [512, 256, 128, 64, 32, 16, 1]
        layers = []
        for i in range(6):
            layers.append(nn.ConvTranspose2d(dec_ch[i], dec_ch[i + 1], 4, 2, 1))
            if i < 5:
                layers += [nn.BatchNorm2d(dec_ch[i + 1]), nn.ReLU()]
        self.conv_decoder = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        h = self.encoder(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = reparameterize(mu, logvar)
        logits = self.conv_decoder(self.dense_decoder(z).view(-1, 512, 1, 1))
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        return (rec + kl_divergence(mu, logvar)) / x.shape[0]


class DenseVAE(nn.Module):
    """The mlp workload (norbvae's kernels::workloads::Workload::Mlp): a VAE on 500 PCA scores."""

    def __init__(self):
        super().__init__()

        def block(i, o):
            return [nn.Linear(i, o), nn.BatchNorm1d(o), nn.ReLU()]

        self.encoder = nn.Sequential(*block(500, 512), *block(512, 512), *block(512, 512), *block(512, 512))
        self.mu = nn.Linear(512, 128)
        self.logvar = nn.Linear(512, 128)
        self.decoder = nn.Sequential(
            *block(128, 512), *block(512, 512), *block(512, 512), *block(512, 512), nn.Linear(512, 500)
        )

    def forward(self, x):
        h = self.encoder(x)
        mu, logvar = self.mu(h), self.logvar(h)
        r = self.decoder(reparameterize(mu, logvar))
        return (((r - x) ** 2).sum() + kl_divergence(mu, logvar)) / x.shape[0]


def run(kind, threads, batch):
    torch.set_num_threads(threads)
    model = ConvVAE() if kind == "conv" else DenseVAE()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.rand(batch, 1, 64, 64) if kind == "conv" else torch.randn(batch, 500)
    for _ in range(WARMUP_STEPS):
        opt.zero_grad()
        model(x).backward()
        opt.step()
    start = time.perf_counter()
    for i in range(TIMED_STEPS):
        opt.zero_grad()
        loss = model(x)
        loss.backward()
        opt.step()
        if i == 0:
            first = loss.item()
    elapsed = time.perf_counter() - start
    print(
        f"torch {kind} threads={threads} B={batch}: {TIMED_STEPS * batch / elapsed:.0f} samples/s "
        f"loss {first:.1f} -> {loss.item():.1f}",
        flush=True,
    )


def main(argv):
    torch.manual_seed(0)
    print("torch", torch.__version__)
    for threads in [int(a) for a in argv] or [1, 2]:
        run("conv", threads, 64)
        run("mlp", threads, 128)


if __name__ == "__main__":
    main(sys.argv[1:])
