#!/usr/bin/env python3
"""Load a norbvae run in PyTorch.

Rebuilds a trained run's VAE as a ``torch.nn.Module`` from the run's ``model.json`` (format
version 2 describes the network layer by layer) and loads its tensors from the checkpoint's
``model.safetensors``. Needs torch, safetensors and numpy only; norbvae itself is not imported.

    import torch, norbvae_torch
    vae = norbvae_torch.load_run("runs/conv", which="best")    # eval mode
    x = torch.rand(4, *vae.image_shape)  # any float tensor [b, c, h, w] of pixels in [0, 1]
    mu, logvar = vae.encode(x)          # the code's posterior (a hierarchy: its top group)
    pixels = vae.reconstruct(x)         # decoder mean at the posterior mean, pixels in [0, 1]
    samples = vae.sample(16, torch.Generator().manual_seed(0))

``reconstruct`` returns what norbvae's evaluation uses for the reconstruction error
(``train::metrics::reconstruct``): ``Vae::reconstruct``'s decoder output, the likelihood's mean,
mapped back to pixels (PCA inverse for ``pca_dense`` models) and clamped to [0, 1].

As a script: ``python norbvae_torch.py RUN_DIR [--which best|last] [--grid out.png]
[--images images.safetensors --out out.safetensors]`` prints the run's summary, writes a grid of
reconstructions of the images in the file (``images`` [n, c, h, w]) or of samples, and with
``--out`` writes ``recon``, ``mu`` and ``logvar`` of those images as safetensors.
"""
import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

# The newest versions this loader understands (src/format/model.rs, src/format/tensors.rs).
MODEL_FORMAT_VERSION = 2
TENSORS_FORMAT_VERSION = 1
WEIGHTS_FORMAT = "norbvae-weights"
F64_MIN_POSITIVE = 2.2250738585072014e-308


class NorbvaeFormatError(Exception):
    """A run directory this loader cannot read (the message names the file)."""


# --------------------------------------------------------------------------------------------
# Layers


def _activation(spec):
    kind = spec["kind"]
    if kind == "relu":
        return nn.ReLU()
    if kind == "leaky_relu":
        return nn.LeakyReLU(spec["slope"])
    if kind == "silu":
        return nn.SiLU()
    raise NorbvaeFormatError(f"unknown activation {kind!r}")


class BatchNorm(nn.Module):
    """Batch norm over dim 1 of [b, c, h, w] or [b, f] (PyTorch's formula and momentum)."""

    def __init__(self, features, eps, momentum):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)


class PadBottomRight(nn.Module):
    def __init__(self, bottom, right):
        super().__init__()
        self.bottom, self.right = bottom, right

    def forward(self, x):
        return F.pad(x, (0, self.right, 0, self.bottom))


class Crop(nn.Module):
    def __init__(self, height, width):
        super().__init__()
        self.height, self.width = height, width

    def forward(self, x):
        return x[:, :, : self.height, : self.width]


class Reshape(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape((x.shape[0],) + self.shape)


class Residual(nn.Module):
    """activation(x + body(x))."""

    def __init__(self, body, activation):
        super().__init__()
        self.body = body
        self.activation = activation

    def forward(self, x):
        return self.activation(x + self.body(x))


class StageOutput(nn.Module):
    """Marks the encoder features of a level (read by the hierarchical VAE's posterior)."""

    def __init__(self, level):
        super().__init__()
        self.level = level


class LatentGroupAt(nn.Module):
    """Marks where the decoder applies a spatial latent group."""

    def __init__(self, group):
        super().__init__()
        self.group = group


class _Builder:
    """Turns model.json layers into modules, copying their tensors from the checkpoint."""

    def __init__(self, tensors, path):
        self.tensors, self.path, self.used = tensors, path, set()

    def take(self, name, shape):
        if name not in self.tensors:
            raise NorbvaeFormatError(f"{self.path} has no tensor {name!r} (model.json names it)")
        t = self.tensors[name]
        if tuple(t.shape) != tuple(shape):
            raise NorbvaeFormatError(
                f"{self.path}: tensor {name!r} has shape {tuple(t.shape)}, model.json implies {tuple(shape)}")
        self.used.add(name)
        return t.to(torch.float32)

    def layer(self, spec):
        op = spec["op"]
        if op == "pad_bottom_right":
            return PadBottomRight(spec["bottom"], spec["right"])
        if op == "crop":
            return Crop(spec["height"], spec["width"])
        if op in ("conv2d", "conv_transpose2d"):
            cin, cout, k = spec["in_channels"], spec["out_channels"], spec["kernel"]
            if op == "conv2d":
                m = nn.Conv2d(cin, cout, k, spec["stride"], spec["padding"])
                wshape = (cout, cin, k, k)
            else:
                m = nn.ConvTranspose2d(cin, cout, k, spec["stride"], spec["padding"])
                wshape = (cin, cout, k, k)
            with torch.no_grad():
                m.weight.copy_(self.take(spec["weight"], wshape))
                m.bias.copy_(self.take(spec["bias"], (cout,)))
            return m
        if op == "linear":
            m = nn.Linear(spec["in_features"], spec["out_features"])
            with torch.no_grad():
                m.weight.copy_(self.take(spec["weight"], (spec["out_features"], spec["in_features"])))
                m.bias.copy_(self.take(spec["bias"], (spec["out_features"],)))
            return m
        if op == "batch_norm":
            f = spec["features"]
            m = BatchNorm(f, spec["eps"], spec["momentum"])
            with torch.no_grad():
                for attr in ("weight", "bias", "running_mean", "running_var"):
                    getattr(m, attr).copy_(self.take(spec[attr], (f,)))
            return m
        if op == "activation":
            return _activation(spec["activation"])
        if op == "flatten":
            return nn.Flatten(1)
        if op == "reshape":
            return Reshape(spec["shape"])
        if op == "residual":
            return Residual(self.sequence(spec["body"]), _activation(spec["activation"]))
        if op == "stage_output":
            return StageOutput(spec["level"])
        if op == "latent_group":
            return LatentGroupAt(spec["group"])
        raise NorbvaeFormatError(f"unknown layer op {op!r} in model.json")

    def sequence(self, specs):
        return nn.Sequential(*[self.layer(s) for s in specs])


class LatentGroup(nn.Module):
    """A spatial latent group of the hierarchical VAE (src/model/hierarchical.rs)."""

    def __init__(self, spec, build):
        super().__init__()
        self.channels, self.level = spec["channels"], spec["level"]
        self.shape = (spec["channels"], spec["height"], spec["width"])
        self.clamp = spec["logvar_clamp"]
        self.prior = build.layer(spec["prior"])
        self.posterior = build.layer(spec["posterior"])
        self.merge = build.layer(spec["merge"])

    def soft_clamp(self, x):
        return torch.tanh(x / self.clamp) * self.clamp

    def forward(self, d, feats=None, eps=None):
        """The new top-down state: d + merge(z), z the mean (eps None) or mean + sigma eps of the
        posterior (with the encoder's features) or of the conditional prior (without)."""
        c = self.channels
        p = self.prior(d)
        mu, lv = p[:, :c], self.soft_clamp(p[:, c:])
        if feats is not None:
            q = self.posterior(torch.cat([d, feats[self.level]], 1))
            mu, lv = mu + q[:, :c], lv + self.soft_clamp(q[:, c:])
        z = mu if eps is None else mu + torch.exp(lv * 0.5) * eps
        return d + self.merge(z)


# --------------------------------------------------------------------------------------------
# The VAE


def _mean_activation(name):
    return {
        "identity": lambda t: t,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "tanh_unit": lambda t: (torch.tanh(t) + 1.0) * 0.5,
    }[name]


class NorbVae(nn.Module):
    """A norbvae VAE rebuilt from model.json. Inputs and outputs are float32 tensors; images are
    [b, c, h, w] with pixels in [0, 1]."""

    def __init__(self, meta, tensors, weights_path, pca=None):
        super().__init__()
        arch = meta["architecture"]
        self.meta, self.arch = meta, arch
        self.kind = arch["kind"]
        self.latent_dim = arch["latent_dim"]
        self.total_latent_dim = arch["total_latent_dim"]
        self.image_shape = tuple(meta["image_shape"])
        b = _Builder(tensors, weights_path)
        self.encoder = nn.ModuleList(b.layer(s) for s in arch["encoder"])
        self.mu = b.layer(arch["mu"])
        self.logvar = b.layer(arch["logvar"])
        self.decoder = nn.ModuleList(b.layer(s) for s in arch["decoder"])
        self.groups = nn.ModuleList(LatentGroup(g, b) for g in arch.get("groups", []))
        lik = arch["likelihood"]
        self.likelihood = lik
        self._mean_act = _mean_activation(lik["mean_activation"])
        if lik.get("raw_logvar"):
            self.register_buffer("raw_logvar", b.take(lik["raw_logvar"], (1,)))
        if lik.get("log_sigma"):
            self.register_buffer("log_sigma", b.take(lik["log_sigma"], (1,)))
        prior = arch["prior"]
        self.prior_kind = prior["kind"]
        if self.prior_kind == "vamp":
            raw = tensors.get(prior["tensor"])
            if raw is None:
                raise NorbvaeFormatError(f"{weights_path} has no tensor {prior['tensor']!r}")
            self.pseudo_inputs_raw = nn.Parameter(b.take(prior["tensor"], tuple(raw.shape)))
            self._pseudo_transform = {"sigmoid": torch.sigmoid, "identity": lambda t: t}[
                prior["input_transform"]]
        unused = sorted(set(tensors) - b.used)
        if unused:
            raise NorbvaeFormatError(
                f"{weights_path} holds tensors model.json does not use: {', '.join(unused[:5])}")
        inp = arch["input"]
        self.input_kind = inp["kind"]
        if self.input_kind == "pca":
            if pca is None:
                raise NorbvaeFormatError("a pca_dense model needs its run's pca.safetensors")
            k = inp["components"]
            comps = pca["components"].to(torch.float32)
            if comps.shape[0] < k:
                raise NorbvaeFormatError(f"pca.safetensors has {comps.shape[0]} components, model.json needs {k}")
            self.register_buffer("pca_mean", pca["mean"].to(torch.float32))
            self.register_buffer("pca_components", comps[:k].contiguous())
            ev = pca["explained_variance"].to(torch.float32)[:k]
            dim = comps.shape[1]
            total = float(pca["total_variance"].to(torch.float64).reshape(-1)[0])
            floor = np.float32(max(total / dim * inp["whitening_floor_factor"], F64_MIN_POSITIVE))
            self.register_buffer("pca_scales", torch.sqrt(torch.clamp(ev, min=float(floor))))
            self.whiten = bool(inp["whiten"])
        self.eval()

    # ---- model space

    def to_model(self, images):
        """Pixels [b, c, h, w] -> what the encoder eats (images, or PCA coefficients [b, k])."""
        if self.input_kind == "image":
            return images
        x = images.reshape(images.shape[0], -1) - self.pca_mean
        coef = x @ self.pca_components.T
        if self.whiten:
            coef = coef * (1.0 / self.pca_scales)
        return coef

    def to_pixels(self, mean):
        """A mean in model space -> pixels [b, c, h, w] clamped to [0, 1]."""
        if self.input_kind == "pca":
            coef = mean * self.pca_scales if self.whiten else mean
            mean = (self.pca_mean + coef @ self.pca_components).reshape((-1,) + self.image_shape)
        return mean.clamp(0.0, 1.0)

    def bottom_up(self, x):
        """Model input -> (features of each level, mu, logvar)."""
        feats, h = [], x
        for layer in self.encoder:
            if isinstance(layer, StageOutput):
                feats.append(h)
            else:
                h = layer(h)
        return feats, self.mu(h), self.logvar(h)

    def encode_model(self, x):
        _, mu, lv = self.bottom_up(x)
        return mu, lv

    def top_down(self, z, feats=None, group_noise=None):
        """Code [b, latent_dim] -> decoder output. Spatial groups take their posterior (with
        `feats`) or conditional prior (without) mean, or mean + sigma * group_noise[g]."""
        h = z
        for layer in self.decoder:
            if isinstance(layer, LatentGroupAt):
                eps = None if group_noise is None else group_noise[layer.group]
                h = self.groups[layer.group](h, feats, eps)
            else:
                h = layer(h)
        return h

    def decode_output(self, z):
        """Decoder output for codes [b, latent_dim] (norbvae's Vae::decode)."""
        return self.top_down(z)

    def reconstruct_output(self, x):
        """Decoder output at the posterior means of every group (norbvae's Vae::reconstruct),
        for a model input (see to_model)."""
        feats, mu, _ = self.bottom_up(x)
        return self.top_down(mu, feats if self.groups else None)

    def mean(self, dec):
        """The likelihood's mean in model space, shaped like the data."""
        lik, act = self.likelihood, self._mean_act
        kind, p = lik["kind"], lik["outputs_per_dim"]
        if kind in ("discretized_logistic", "discretized_logistic_mixture"):
            b, k = dec.shape[0], lik["components"]
            blocks = dec.reshape(b, p, -1)
            if k == 1:
                m = act(blocks[:, 0:1]).sum(1)
            else:
                w = torch.exp(torch.log_softmax(blocks[:, :k], 1))
                m = (w * act(blocks[:, k:2 * k])).sum(1)
            shape = list(dec.shape)
            shape[1] //= p
            return m.reshape(shape)
        if kind == "gaussian_per_pixel":
            return act(dec[:, : dec.shape[1] // 2])
        return act(dec)

    # ---- the public interface, in pixels

    @torch.no_grad()
    def encode(self, images):
        """(mu, logvar) of the code, each [b, latent_dim], for pixels [b, c, h, w]."""
        return self.encode_model(self.to_model(images))

    @torch.no_grad()
    def decode(self, z):
        """Decoder means in pixels [b, c, h, w] (clamped to [0, 1]) for codes [b, latent_dim]."""
        return self.to_pixels(self.mean(self.decode_output(z)))

    @torch.no_grad()
    def reconstruct(self, images):
        """Decoder means at the posterior means, pixels [b, c, h, w] clamped to [0, 1]."""
        return self.to_pixels(self.mean(self.reconstruct_output(self.to_model(images))))

    @torch.no_grad()
    def prior_codes(self, n, generator=None):
        """n codes from the prior of the code: N(0, I), or the VampPrior's mixture."""
        e = torch.randn(n, self.latent_dim, generator=generator)
        if self.prior_kind != "vamp":
            return e
        mu_k, lv_k = self.encode_model(self._pseudo_transform(self.pseudo_inputs_raw))
        k = torch.randint(mu_k.shape[0], (n,), generator=generator)
        return mu_k[k] + torch.exp(0.5 * lv_k[k]) * e

    @torch.no_grad()
    def sample(self, n, generator=None, lower_groups="sample"):
        """n samples in pixels. A hierarchy's spatial groups are drawn from their conditional
        priors (lower_groups="sample") or set to their means ("mean", as norbvae's samplers do)."""
        z = self.prior_codes(n, generator)
        noise = None
        if self.groups and lower_groups == "sample":
            noise = [torch.randn((n,) + g.shape, generator=generator) for g in self.groups]
        return self.to_pixels(self.mean(self.top_down(z, None, noise)))


# --------------------------------------------------------------------------------------------
# Reading a run directory


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise NorbvaeFormatError(f"reading {path}: {e}") from e
    except json.JSONDecodeError as e:
        raise NorbvaeFormatError(f"parsing {path}: {e}") from e


def _check_header(path, expected):
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    found = meta.get("format")
    if found is not None and found != expected:
        raise NorbvaeFormatError(f"{path} holds {found} tensors, expected {expected}")
    version = int(meta.get("format_version", "0"))
    if version > TENSORS_FORMAT_VERSION:
        raise NorbvaeFormatError(
            f"{path} has format_version {version}, newer than this loader understands "
            f"(up to {TENSORS_FORMAT_VERSION})")


def _verified(unit_dir, name):
    """A file of a checkpoint unit, checked against the unit's manifest (length and SHA-256)."""
    manifest = _read_json(os.path.join(unit_dir, "manifest.json"))
    entry = manifest.get("files", {}).get(name)
    path = os.path.join(unit_dir, name)
    if entry is None:
        raise NorbvaeFormatError(f"{unit_dir}/manifest.json does not list {name}")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise NorbvaeFormatError(f"{path} does not match its manifest: a damaged checkpoint")
    return path


def weights_path(run_dir, which="best"):
    """The model tensors of a run's best or last checkpoint (unit layout, or the older flat one)."""
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    unit = os.path.join(run_dir, "checkpoints", which)
    if os.path.isfile(os.path.join(unit, "manifest.json")):
        return _verified(unit, "model.safetensors")
    flat = os.path.join(run_dir, "checkpoints", f"{which}.safetensors")
    if os.path.isfile(flat):
        return flat
    raise NorbvaeFormatError(f"{run_dir} has no {which} checkpoint ({unit}/ or {flat}): was it trained?")


def load_run(run_dir, which="best"):
    """The run's VAE as a NorbVae module in evaluation mode (batch norm on running statistics)."""
    meta_path = os.path.join(run_dir, "model.json")
    meta = _read_json(meta_path)
    version = meta.get("format_version", 0)
    if version > MODEL_FORMAT_VERSION:
        raise NorbvaeFormatError(
            f"{meta_path} has format_version {version}, newer than this loader understands "
            f"(up to {MODEL_FORMAT_VERSION})")
    if "architecture" not in meta:
        raise NorbvaeFormatError(
            f"{meta_path} (format_version {version}) has no architecture: it was written before "
            "model.json version 2; train the run again with a current norbvae")
    path = weights_path(run_dir, which)
    _check_header(path, WEIGHTS_FORMAT)
    tensors = load_file(path)
    pca = None
    inp = meta["architecture"]["input"]
    if inp["kind"] == "pca":
        pca_path = os.path.join(run_dir, inp["file"])
        if not os.path.isfile(pca_path):
            raise NorbvaeFormatError(f"{pca_path} is missing (the model's PCA basis)")
        pca = load_file(pca_path)
    return NorbVae(meta, tensors, path, pca)


def summary(vae):
    arch = vae.arch
    n_params = sum(p.numel() for p in vae.parameters())
    lines = [
        f"model      {arch['kind']}, image {'x'.join(map(str, vae.image_shape))}, "
        f"input {arch['input']['kind']}",
        f"latent     code {vae.latent_dim}, all groups {vae.total_latent_dim}",
        f"layers     encoder {len(arch['encoder'])}, decoder {len(arch['decoder'])}, "
        f"spatial groups {len(arch.get('groups', []))}",
        f"likelihood {arch['likelihood']['kind']} (mean: {arch['likelihood']['mean_activation']})",
        f"prior      {arch['prior']['kind']}",
        f"parameters {vae.meta['num_parameters']} trainable in norbvae ({n_params} tensors' scalars here)",
    ]
    return "\n".join(lines)


def save_grid(images, path, columns=8):
    """A PNG grid of pixels [n, c, h, w] in [0, 1] (grey or RGB), written without extra packages."""
    import struct
    import zlib

    x = (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    n, c, h, w = x.shape
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    canvas = np.zeros((rows * (h + 2), cols * (w + 2), c), np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        canvas[r * (h + 2) + 1: r * (h + 2) + 1 + h, q * (w + 2) + 1: q * (w + 2) + 1 + w] = x[i].transpose(1, 2, 0)
    colour = {1: 0, 3: 2}[c]
    raw = b"".join(b"\x00" + canvas[y].tobytes() for y in range(canvas.shape[0]))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", canvas.shape[1], canvas.shape[0], 8,
                                                             colour, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def _load_images(path):
    if path.endswith(".npy"):
        return torch.from_numpy(np.load(path).astype(np.float32))
    return load_file(path)["images"].to(torch.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Load a norbvae run in PyTorch.")
    ap.add_argument("run_dir")
    ap.add_argument("--which", default="best", choices=["best", "last"])
    ap.add_argument("--images", help="images [n, c, h, w] in [0, 1]: .npy, or .safetensors with key 'images'")
    ap.add_argument("--out", help="write recon, mu, logvar of --images here (safetensors)")
    ap.add_argument("--grid", help="PNG of the reconstructions of --images (else of 16 samples)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        vae = load_run(args.run_dir, args.which)
    except NorbvaeFormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(summary(vae))
    if args.images:
        x = _load_images(args.images)
        recon = vae.reconstruct(x)
        mu, logvar = vae.encode(x)
        if args.out:
            save_file({"recon": recon.contiguous(), "mu": mu.contiguous(), "logvar": logvar.contiguous()}, args.out)
            print(f"wrote {args.out}")
        if args.grid:
            save_grid(torch.cat([x, recon]), args.grid, columns=min(len(x), 8))
            print(f"wrote {args.grid} (inputs, then reconstructions)")
    elif args.grid:
        save_grid(vae.sample(16, torch.Generator().manual_seed(args.seed)), args.grid)
        print(f"wrote {args.grid} (16 samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
