"""1. Object encoding: masked object images, the object VAE (frames -> one slot per object),
and the frame composed back from per-object reconstructions."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from s2ssm.config import VAEConfig
from s2ssm.errors import InvalidInputError, InvalidTypeError

__all__ = ["ObjectVAE", "compose_frame", "image_moments", "object_images"]


def object_images(
    frames: Tensor, masks: Tensor, num_objects: int, background: Tensor | None = None
) -> Tensor:
    """Masked object images: (..., H, W, 3) uint8 frames and (..., H, W) uint8 bit masks
    (bit k = object k) give (..., K, 3, H, W) float32, object k's pixels and zeros elsewhere.

    Without ``background`` the pixels are the frame's, in [0, 1]. With it ((H, W, 3) uint8, the
    static scene, :func:`s2ssm.sim.background`) they are ``frame - background`` in [-1, 1]: an
    anti-aliased edge pixel then holds ``coverage x (colour - background)`` instead of a
    coverage-dependent share of background grey, so an object's image (and its slot) moves
    continuously with the object instead of jumping with its sub-pixel phase.
    """
    if frames.dtype != torch.uint8 or masks.dtype != torch.uint8:
        raise InvalidTypeError(
            f"frames and masks must be uint8, got {frames.dtype} and {masks.dtype}"
        )
    if frames.shape[:-1] != masks.shape or frames.shape[-1] != 3:
        raise InvalidInputError(
            f"frames must be (..., H, W, 3) and masks (..., H, W) with the same leading shape, "
            f"got {tuple(frames.shape)} and {tuple(masks.shape)}"
        )
    image = frames.movedim(-1, -3).float().div(255.0)  # (..., 3, H, W)
    if background is not None:
        if background.shape != frames.shape[-3:]:
            raise InvalidInputError(
                f"background must be {tuple(frames.shape[-3:])} like one frame, got "
                f"{tuple(background.shape)}"
            )
        image = image - background.movedim(-1, -3).float().div(255.0)
    bits = torch.arange(num_objects, device=masks.device, dtype=torch.uint8)
    obj = (masks.unsqueeze(-3) >> bits.view(-1, 1, 1)) & 1  # (..., K, H, W)
    return image.unsqueeze(-4) * obj.unsqueeze(-3).float()


def compose_frame(object_recons: Tensor, background: Tensor | None = None) -> Tensor:
    """A frame from per-object images: (..., K, 3, H, W) -> (..., 3, H, W), summed onto the
    ``background`` ((H, W, 3) uint8, if the images were made with one) and clipped to [0, 1]."""
    frame = object_recons.sum(dim=-4)
    if background is not None:
        frame = frame + background.movedim(-1, -3).to(frame.dtype).div(255.0)
    return frame.clamp(0.0, 1.0)


def _coords(height: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(2, H, W) pixel-centre coordinates in [-1, 1] (CoordConv channels)."""
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))


_N_MOMENTS = 15
# Pseudo-mass added to every channel's mass before normalising (intensity units: one full
# pixel). A hard "is this channel present" switch makes the centroid jump from 0 to wherever a
# faint sliver appears in a channel (an anti-aliased edge, the ball touching a paddle); with
# the pseudo-mass the centroid and spread fade in continuously with the mass.
_MOMENT_PSEUDO_MASS = 1.0


def image_moments(images: Tensor) -> Tensor:
    """(N, 3, H, W) -> (N, 15): per colour channel the mass (mean absolute intensity x 10),
    the centroid (y, x) and spread (std y, std x) weighted by the absolute intensity, in [-1, 1]
    coordinates, each shrunk towards 0 by a pseudo-mass of one pixel so that all 15 are
    continuous in the image (signed, background-subtracted images work as well)."""
    h, w = images.shape[-2:]
    grid = _coords(h, w, images.device, images.dtype).flatten(1)  # (2, H*W)
    flat = images.flatten(2).abs()  # (N, 3, H*W)
    mass = flat.sum(-1, keepdim=True)  # (N, 3, 1)
    weights = flat / (mass + _MOMENT_PSEUDO_MASS)
    mean = torch.einsum("ncp,kp->nck", weights, grid)  # (N, 3, 2)
    centred = grid[None, None] - mean[..., None]  # (N, 3, 2, H*W)
    var = torch.einsum("ncp,nckp->nck", weights, centred.pow(2))
    std = (var + 1e-6).sqrt() - 1e-3  # smooth at 0, 0 for an empty channel
    feats = torch.cat([mass * (10.0 / (h * w)), mean, std], dim=-1)
    return feats.flatten(1)


class ObjectVAE(nn.Module):
    """VAE of one object's masked image (3 x H x W, see :func:`object_images`) to a D-dimensional
    slot.

    Encoder: CoordConv (RGB + 2 coordinate channels), one stride-2 4x4 conv per entry of
    ``channels``, and the image's intensity moments, then a linear layer to mean and
    log-variance. Decoder: the latent predicts a coloured Gaussian blob (colour, centre, size)
    which is rendered, then a spatial broadcast decoder (the latent tiled over the image with
    the coordinate channels and the blob, 3x3 convs) adds a correction that shapes it. Plain
    pixel decoders sit for thousands of steps at the all-black image on these few-pixel
    objects; the blob gives the gradient a place to start.
    """

    def __init__(self, cfg: VAEConfig, resolution: int) -> None:
        super().__init__()
        self.latent_dim = cfg.latent_dim
        self.beta = cfg.beta
        self.resolution = resolution
        chans = (5, *cfg.channels)
        side = resolution // 2 ** len(cfg.channels)
        enc: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(chans):
            enc += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
        self.encoder = nn.Sequential(*enc)
        # conv features + the image's intensity moments (mass, centroid, spread per colour
        # channel): a fresh conv encoder barely sees a few-pixel object, the moments make its
        # position and size readable from the first step
        n_conv = chans[-1] * side * side
        self.to_stats = nn.Linear(n_conv + _N_MOMENTS, 2 * cfg.latent_dim)
        with torch.no_grad():  # the posterior mean starts as the moments (+ small conv part)
            self.to_stats.weight[:, :n_conv].mul_(0.1)
            self.to_stats.weight[:, n_conv:].zero_()
            m = min(_N_MOMENTS, cfg.latent_dim)
            self.to_stats.weight[:m, n_conv : n_conv + m] = torch.eye(m)
        # start with a small posterior variance: unit noise on a fresh encoder's tiny means
        # teaches the decoder to ignore the latent (posterior collapse) before it can learn
        nn.init.constant_(self.to_stats.bias[cfg.latent_dim :], -6.0)
        hidden = cfg.decoder_channels
        self.blob = nn.Linear(cfg.latent_dim, 7)  # colour logits (3), centre (2), log-std (2)
        nn.init.normal_(self.blob.weight, std=0.01)
        nn.init.zeros_(self.blob.bias)
        nn.init.constant_(self.blob.bias[5:], math.log(0.1))
        last = nn.Conv2d(hidden, 3, 1)
        nn.init.zeros_(last.weight)  # the decoder starts as the blob alone
        nn.init.zeros_(last.bias)  # type: ignore[arg-type]
        self.decoder = nn.Sequential(
            nn.Conv2d(cfg.latent_dim + 5, hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.SiLU(),
            last,
        )

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(..., 3, H, W) -> posterior mean and log-variance, each (..., D)."""
        lead = images.shape[:-3]
        flat = images.reshape(-1, *images.shape[-3:])
        h, w = flat.shape[-2:]
        grid = _coords(h, w, flat.device, flat.dtype).expand(flat.shape[0], -1, -1, -1)
        feats = self.encoder(torch.cat([flat, grid], dim=1)).flatten(1)
        stats = self.to_stats(torch.cat([feats, image_moments(flat)], dim=1))
        mu, logvar = stats.chunk(2, dim=-1)
        return mu.reshape(*lead, -1), logvar.clamp(-10.0, 10.0).reshape(*lead, -1)

    def decode(self, z: Tensor) -> Tensor:
        """(..., D) -> reconstructed masked images (..., 3, H, W), unclipped."""
        lead = z.shape[:-1]
        flat = z.reshape(-1, z.shape[-1])
        r = self.resolution
        grid = _coords(r, r, flat.device, flat.dtype).expand(flat.shape[0], -1, -1, -1)
        tiled = flat[:, :, None, None].expand(-1, -1, r, r)
        p = self.blob(flat)
        colour = torch.tanh(p[:, :3])  # signed: background-subtracted images
        centre = torch.tanh(p[:, 3:5])
        std = torch.exp(p[:, 5:7].clamp(-5.0, 1.0))
        offset = (grid - centre[:, :, None, None]) / std[:, :, None, None]
        blob = colour[:, :, None, None] * torch.exp(-0.5 * offset.pow(2).sum(1, keepdim=True))
        # a linear correction (no output sigmoid: it saturates at 0 on black images and stalls)
        out = blob + self.decoder(torch.cat([tiled, grid, blob], dim=1))
        return out.reshape(*lead, *out.shape[-3:])

    def loss(self, images: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Negative ELBO per image: summed squared pixel error + beta x KL (reparameterised)."""
        mu, logvar = self.encode(images)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        recon = self.decode(z)
        rec = (recon - images).pow(2).flatten(-3).sum(-1).mean()
        kl = (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(-1).mean()
        total = rec + self.beta * kl
        return total, {"vae_recon": float(rec.detach()), "vae_kl": float(kl.detach())}
