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

The improved models (`norbvae bench --workload residual|hierarchy|ema|improved`) are replicas of
norbvae's residual conv VAE and hierarchical VAE built from the sizes in a norbvae training config
(bench/configs/residual-conv-32.toml, configs/ladder/5-residual.toml): each line adds the trainable parameter count,
which `norbvae bench` compares with its own model's before it trusts the figures:
    torch residual threads=1 B=64: 106 samples/s loss 577.2 -> 219.5 params 4701473
    torch ema-hierarchy threads=1 tensors=144: 178.1 updates/s params 4870881

Usage: python bench/pytorch_workloads.py [threads ...]      (default: 1 2)
       python bench/pytorch_workloads.py --config CONFIG.toml --name NAME [--steps N] [--warmup N] [threads ...]
       python bench/pytorch_workloads.py --config CONFIG.toml --name NAME --ema [--ema-updates N] [threads ...]
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


# ---------------------------------------------------------------------------------------------
# The improved model (`norbvae bench --workload residual|hierarchy|ema`): a replica of norbvae's
# conv VAE with residual cells (model/conv_vae.rs, model/residual.rs) and of its hierarchical VAE
# (model/hierarchical.rs), sizes read from the same training config (configs/ladder/*.toml), with
# the sigma-VAE likelihood (likelihood.kind = "gaussian_optimal"). Anything of a config that this
# replica does not reproduce is refused with the key's name, and `norbvae bench` compares the
# parameter counts of both sides before it trusts a figure.


class ModelConfig:
    """The keys of a norbvae training config the replica reads, with norbvae's defaults."""

    def __init__(self, path, table):
        def get(section, key, default):
            t = table
            for part in section.split(".") if section else []:
                t = t.get(part, {})
            return t.get(key, default)

        def refuse(key, value, why):
            sys.exit(f"pytorch_workloads.py: {path}: {key} = {value!r} is not replicated ({why})")

        self.path = path
        self.seed = table.get("seed", 0)
        self.image_size = get("data", "image_size", None)
        if self.image_size is None:
            refuse("data.image_size", None, "the benchmark needs the image side")
        self.kind = get("model", "kind", "conv")
        if self.kind not in ("conv", "hierarchical"):
            refuse("model.kind", self.kind, "only conv and hierarchical")
        self.latent = get("model", "latent_dim", 10)
        if get("model.prior", "kind", "standard") != "standard":
            refuse("model.prior.kind", get("model.prior", "kind", None), "only the standard prior")
        self.downsizings = get("model.conv", "downsizings", 6)
        first = get("model.conv", "first_filters", 16)
        cap = get("model.conv", "max_filters", 512)
        self.filters = [min(first << i, cap) for i in range(self.downsizings)]
        self.intermediate = get("model.conv", "intermediate", 256)
        self.batch_norm = get("model.conv", "batch_norm", True)
        self.activation = get("model.conv", "activation", "relu")
        if self.activation not in ("relu", "leaky_relu", "silu"):
            refuse("model.conv.activation", self.activation, "relu, leaky_relu or silu")
        self.blocks = get("model.conv", "blocks_per_stage", 0)
        self.spatial_groups = get("model.hierarchical", "spatial_groups", 2)
        self.latent_channels = get("model.hierarchical", "latent_channels", 8)
        lik = get("likelihood", "kind", "bernoulli")
        if lik != "gaussian_optimal":
            refuse("likelihood.kind", lik, "only gaussian_optimal, the sigma-VAE")
        self.min_log_sigma = get("likelihood", "min_log_sigma", -6.0)
        self.output_activation = get("likelihood", "output_activation", "none")
        self.beta = get("kl", "beta", 1.0)
        warmup = get("kl", "warmup_epochs", 0.0)
        if warmup > 0:
            self.beta *= min(1.0, 1.0 / warmup)  # norbvae's weight at the end of epoch 1
            if get("model.hierarchical", "group_warmup_epochs", []):
                refuse("model.hierarchical.group_warmup_epochs", "[...]", "per-group warm-up")
        self.free_bits = get("kl", "free_bits", 0.0)
        self.batch = get("train", "batch_size", 64)
        self.lr = get("train", "lr", 1e-3)
        self.betas = (get("train", "beta1", 0.9), get("train", "beta2", 0.999))
        self.eps = get("train", "eps", 1e-8)
        self.ema_decay = get("train", "ema_decay", None)
        for key in ("grad_clip", "grad_skip_threshold"):
            if get("train", key, None) is not None:
                refuse(f"train.{key}", get("train", key, None), "no gradient guard")
        m = 1 << self.downsizings
        self.padded = -(-self.image_size // m) * m

    @staticmethod
    def load(path):
        import tomllib

        try:
            with open(path, "rb") as f:
                return ModelConfig(path, tomllib.load(f))
        except OSError as e:
            sys.exit(f"pytorch_workloads.py: cannot read config {path}: {e}")


def make_activation(name):
    return {"relu": nn.ReLU(), "leaky_relu": nn.LeakyReLU(0.2), "silu": nn.SiLU()}[name]


def norm(cfg, c):
    return nn.BatchNorm2d(c) if cfg.batch_norm else nn.Identity()


class ResCell(nn.Module):
    """act(x + bn2(conv2(act(bn1(conv1(x)))))), 3x3 stride-1 convolutions (model/residual.rs)."""

    def __init__(self, cfg, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, 1, 1), norm(cfg, c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, 1, 1), norm(cfg, c)
        self.act = make_activation(cfg.activation)

    def forward(self, x):
        h = self.act(self.bn1(self.conv1(x)))
        return self.act(x + self.bn2(self.conv2(h)))


def soft_clamp(x):
    return 5.0 * torch.tanh(x / 5.0)


class ResidualVAE(nn.Module):
    """norbvae's conv VAE (model/conv_vae.rs) and, with cfg.kind == "hierarchical", its
    hierarchical VAE (model/hierarchical.rs): spatial latent groups in the top-down decoder."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        f, n = cfg.filters, len(cfg.filters)
        self.act = make_activation(cfg.activation)
        self.enc = nn.ModuleList()
        c = 1
        for i in range(n):
            self.enc.append(
                nn.Sequential(
                    nn.Conv2d(c, f[i], 4, 2, 1),
                    norm(cfg, f[i]),
                    make_activation(cfg.activation),
                    *[ResCell(cfg, f[i]) for _ in range(cfg.blocks)],
                )
            )
            c = f[i]
        self.bottom = cfg.padded >> cfg.downsizings
        flat = c * self.bottom * self.bottom
        bn1d = (lambda k: nn.BatchNorm1d(k)) if cfg.batch_norm else (lambda k: nn.Identity())
        self.enc_dense = nn.Sequential(nn.Linear(flat, cfg.intermediate), bn1d(cfg.intermediate), make_activation(cfg.activation))
        self.mu = nn.Linear(cfg.intermediate, cfg.latent)
        self.logvar = nn.Linear(cfg.intermediate, cfg.latent)
        self.dec_dense = nn.Sequential(
            nn.Linear(cfg.latent, cfg.intermediate),
            bn1d(cfg.intermediate),
            make_activation(cfg.activation),
            nn.Linear(cfg.intermediate, flat),
            make_activation(cfg.activation),
        )
        self.dec_cells = nn.ModuleList()
        self.dec = nn.ModuleList()
        c = f[-1]
        for i in range(n):
            self.dec_cells.append(nn.Sequential(*[ResCell(cfg, c) for _ in range(cfg.blocks)]))
            last = i + 1 == n
            c_out = 1 if last else f[n - 2 - i]
            layers = [nn.ConvTranspose2d(c, c_out, 4, 2, 1)]
            if not last:
                layers += [norm(cfg, c_out), make_activation(cfg.activation)]
            self.dec.append(nn.Sequential(*layers))
            c = c_out
        self.groups = nn.ModuleDict()
        if cfg.kind == "hierarchical":
            if not 1 <= cfg.spatial_groups <= n:
                sys.exit(f"pytorch_workloads.py: model.hierarchical.spatial_groups must be 1..={n}")
            cz = cfg.latent_channels
            for i in range(cfg.spatial_groups):
                c_in = f[n - 1 - i]
                g = nn.Module()
                g.prior = nn.Conv2d(c_in, 2 * cz, 3, 1, 1)
                g.posterior = nn.Conv2d(2 * c_in, 2 * cz, 3, 1, 1)
                g.merge = nn.Conv2d(cz, c_in, 1, 1, 0)
                self.groups[str(i)] = g
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)
        for g in self.groups.values():
            for head in (g.prior, g.posterior):  # zero-initialised heads (Conv::zeroed)
                nn.init.zeros_(head.weight)

    def forward(self, x):
        cfg, n, b = self.cfg, len(self.cfg.filters), x.shape[0]
        h = x
        if cfg.padded != cfg.image_size:
            h = F.pad(h, (0, cfg.padded - cfg.image_size, 0, cfg.padded - cfg.image_size))
        feats = []
        for stage in self.enc:
            h = stage(h)
            feats.append(h)
        h = self.enc_dense(h.flatten(1))
        mu, lv = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
        kl_dims = [0.5 * (mu**2 + lv.exp() - lv - 1)]  # [b, d] per group, as model/kl.rs
        d = self.dec_dense(z).view(b, -1, self.bottom, self.bottom)
        cz = cfg.latent_channels
        for i in range(n):
            d = self.dec_cells[i](d)
            g = self.groups[str(i)] if str(i) in self.groups else None
            if g is not None:
                p = g.prior(d)
                mu_p, lv_p = p[:, :cz], soft_clamp(p[:, cz:])
                q = g.posterior(torch.cat([d, feats[n - 1 - i]], 1))
                mu_q, lv_q = mu_p + q[:, :cz], lv_p + soft_clamp(q[:, cz:])
                zg = mu_q + torch.exp(0.5 * lv_q) * torch.randn_like(mu_q)
                dlv = lv_q - lv_p
                kl_dims.append((0.5 * ((dlv.exp() - dlv + (mu_q - mu_p) ** 2 * torch.exp(-lv_p)) - 1)).flatten(1))
                d = d + g.merge(zg)
            d = self.dec[i](d)
        out = d[:, :, : cfg.image_size, : cfg.image_size]
        mean = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}.get(cfg.output_activation, lambda t: t)(out)
        # sigma-VAE: log sigma of the batch's MSE, soft-floored (floor + softplus(ls - floor)).
        ls = 0.5 * torch.log(((x - mean) ** 2).mean())
        ls = cfg.min_log_sigma + F.softplus(ls - cfg.min_log_sigma)
        rec = 0.5 * (LN_2PI + 2 * ls + (x - mean) ** 2 * torch.exp(-2 * ls)).sum() / b
        return rec + cfg.beta * kl_training_term(torch.cat(kl_dims, 1), cfg.free_bits)


LN_2PI = 1.8378770664093453


def kl_training_term(kl_dims, free_bits):
    """The KL term as norbvae trains it (model/kl.rs `kl_training_term`): with free bits, each
    dimension's batch-averaged KL raised to at least `free_bits` nats (no gradient below it),
    summed; else the KL summed over dimensions and averaged over the batch."""
    if free_bits > 0:
        return kl_dims.mean(0).clamp(min=free_bits).sum()
    return kl_dims.sum() / kl_dims.shape[0]


def count_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def run_model(cfg, name, threads, warmup, steps):
    """Training steps of the improved model as norbvae's trainer takes them: one fixed batch,
    forward, loss, backward, Adam, and the weight average's update when the config has one."""
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    model = ResidualVAE(cfg)
    opt = torch.optim.Adam(model.parameters(), cfg.lr, betas=cfg.betas, eps=cfg.eps)
    params = [p for p in model.parameters()]
    avg = [p.detach().clone() for p in params] if cfg.ema_decay is not None else None
    x = torch.rand(cfg.batch, 1, cfg.image_size, cfg.image_size)

    def step():
        opt.zero_grad()
        loss = model(x)
        loss.backward()
        opt.step()
        if avg is not None:
            with torch.no_grad():
                torch._foreach_lerp_(avg, params, 1.0 - cfg.ema_decay)
        return loss

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for i in range(steps):
        loss = step()
        if i == 0:
            first = loss.item()
    elapsed = time.perf_counter() - start
    print(
        f"torch {name} threads={threads} B={cfg.batch}: {steps * cfg.batch / elapsed:.0f} samples/s "
        f"loss {first:.1f} -> {loss.item():.1f} params {count_params(model)}",
        flush=True,
    )


def run_ema(cfg, name, threads, updates):
    """The weight average's update over the model's parameters: torch._foreach_lerp_ (what
    torch.optim.swa_utils.get_ema_multi_avg_fn does), updates per second."""
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    model = ResidualVAE(cfg)
    decay = cfg.ema_decay if cfg.ema_decay is not None else 0.999
    with torch.no_grad():
        params = [p.detach() for p in model.parameters()]
        avg = [0.5 * p for p in params]
        for _ in range(3):
            torch._foreach_lerp_(avg, params, 1.0 - decay)
        start = time.perf_counter()
        for _ in range(updates):
            torch._foreach_lerp_(avg, params, 1.0 - decay)
        elapsed = time.perf_counter() - start
    print(
        f"torch ema-{name} threads={threads} tensors={len(params)}: {updates / elapsed:.1f} updates/s "
        f"params {count_params(model)}",
        flush=True,
    )


def main(argv):
    opts, rest = {}, []
    it = iter(argv)
    for a in it:
        if a in ("--config", "--name", "--steps", "--warmup", "--ema-updates"):
            opts[a] = next(it, None)
            if opts[a] is None:
                sys.exit(f"pytorch_workloads.py: {a} needs a value")
        elif a == "--ema":
            opts[a] = True
        else:
            rest.append(a)
    try:
        threads_list = [int(a) for a in rest] or [1, 2]
    except ValueError:
        sys.exit(f"pytorch_workloads.py: thread counts must be integers, got {rest}")
    torch.manual_seed(0)
    print("torch", torch.__version__)
    if "--config" not in opts:
        for threads in threads_list:
            run("conv", threads, 64)
            run("mlp", threads, 128)
        return
    cfg = ModelConfig.load(opts["--config"])
    name = opts.get("--name", "model")
    for threads in threads_list:
        if opts.get("--ema"):
            run_ema(cfg, name, threads, int(opts.get("--ema-updates", 200)))
        else:
            run_model(cfg, name, threads, int(opts.get("--warmup", WARMUP_STEPS)), int(opts.get("--steps", TIMED_STEPS)))


if __name__ == "__main__":
    main(sys.argv[1:])
