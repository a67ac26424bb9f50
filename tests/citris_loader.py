"""What CITRIS's ``load_datasets`` reads, re-implemented in NumPy for the tests (phlippe/CITRIS,
``experiments/utils.py`` ``load_datasets`` and ``experiments/datasets.py``
``InterventionalPongDataset``, commit 95f6c90): the same files, keys, variable selection,
normalisation, channel order and items, and the same asserts and failure points."""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import numpy as np

#: datasets.py VAR_INFO (module-level in CITRIS, mutated by every dataset it builds).
VAR_INFO_TEMPLATE = OrderedDict(
    [
        ("background", "categ_2"),
        ("ball-vel-dir", "angle"),
        ("ball-vel-magn", "continuous_1"),
        ("ball-x", "continuous_1"),
        ("ball-y", "continuous_1"),
        ("paddle-left-y", "continuous_1"),
        ("paddle-right-y", "continuous_1"),
        ("score-left", "categ_5"),
        ("score-right", "categ_5"),
    ]
)


class InterventionalPongDataset:
    """``InterventionalPongDataset(data_folder, split, single_image, triplet, seq_len, ...)``."""

    def __init__(
        self,
        var_info: OrderedDict,
        data_folder: str,
        split: str = "train",
        single_image: bool = False,
        triplet: bool = False,
        seq_len: int = 2,
        causal_vars: list[str] | None = None,
        return_latents: bool = False,
    ) -> None:
        self.var_info = var_info
        filename = split + ("_triplets" if triplet else "")
        data_file = os.path.join(data_folder, f"{filename}.npz")
        if split.startswith("val") and not os.path.isfile(data_file):
            data_file = os.path.join(data_folder, f"{filename.replace('val', 'test')}.npz")
        assert os.path.isfile(data_file), f"Could not find dataset at {data_file}"
        arr = np.load(data_file)  # no allow_pickle: keys must be a plain string array
        self.imgs = arr["images"]
        self.latents = arr["latents"]
        self.targets = arr["targets"]
        self.keys = [key.replace("_", "-") for key in arr["keys"].tolist()]
        self.single_image, self.triplet = single_image, triplet
        self.seq_len = 1 if (single_image or triplet) else seq_len
        self.return_latents = return_latents
        self._clean_up_data(causal_vars)

    def _clean_up_data(self, causal_vars: list[str] | None) -> None:
        if self.imgs.ndim == 5:
            self.imgs = self.imgs.transpose(0, 1, 4, 2, 3)
        else:
            self.imgs = self.imgs.transpose(0, 3, 1, 2)
        for key in list(self.var_info):
            if key not in self.keys:
                self.var_info.pop(key)
        all_latents, all_targets, self.target_names_l = [], [], []
        for i, key in enumerate(self.keys):
            if key.endswith("-proj"):
                continue
            latent = self.latents[..., i]
            target = self.targets[..., i]
            if key == "ball-vel-magn" and np.unique(latent).shape[0] == 1:
                self.var_info.pop("ball-vel-magn", None)
                continue
            if self.var_info[key].startswith("continuous"):  # KeyError as in CITRIS
                latent = latent / 16.0 - 1.0 if key.endswith(("-x", "-y")) else latent - 2.0
            all_latents.append(latent)
            if (causal_vars is None and target.sum() > 0) or (
                causal_vars is not None and key in causal_vars
            ):
                all_targets.append(target)
                self.target_names_l.append(key)
        self.latents = np.stack(all_latents, axis=-1)
        self.targets = np.stack(all_targets, axis=-1)  # raises on an empty list, as torch.stack

    def num_vars(self) -> int:
        return self.targets.shape[-1]

    def __len__(self) -> int:
        return self.imgs.shape[0] - self.seq_len + 1

    @staticmethod
    def _prepare_imgs(imgs: np.ndarray) -> np.ndarray:
        return imgs.astype(np.float32) / 255.0 * 2.0 - 1.0

    def __getitem__(self, idx: int) -> tuple[np.ndarray, ...]:
        if self.triplet:
            return (
                self._prepare_imgs(self.imgs[idx]),
                self.targets[idx],
                self.latents[idx],
            )
        if self.single_image:
            img = self._prepare_imgs(self.imgs[idx])
            return (img, self.latents[idx]) if self.return_latents else (img,)
        imgs = self._prepare_imgs(self.imgs[idx : idx + self.seq_len])
        targets = self.targets[idx : idx + self.seq_len - 1].astype(np.float32)
        return imgs, targets


def load_datasets(data_dir: str, seq_len: int = 2) -> dict[str, Any]:
    """``experiments/utils.py`` ``load_datasets`` for Interventional Pong."""
    var_info = VAR_INFO_TEMPLATE.copy()
    train = InterventionalPongDataset(var_info, data_dir, "train", seq_len=seq_len)
    names = train.target_names_l
    common = {"return_latents": True, "causal_vars": names}
    return {
        "train": train,
        "val": InterventionalPongDataset(
            var_info, data_dir, "val_indep", single_image=True, **common
        ),
        "val_triplet": InterventionalPongDataset(var_info, data_dir, "val", triplet=True, **common),
        "test": InterventionalPongDataset(
            var_info, data_dir, "test_indep", single_image=True, **common
        ),
        "test_triplet": InterventionalPongDataset(
            var_info, data_dir, "test", triplet=True, **common
        ),
        "var_info": var_info,
    }
