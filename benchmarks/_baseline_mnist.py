"""The baseline of the training-speed benchmark: PyTorch's official MNIST example, trained the
standard way (https://github.com/pytorch/examples/blob/main/mnist/main.py).

Network: conv 1->32 3x3, ReLU, conv 32->64 3x3, ReLU, max pool 2, dropout 0.25, flatten, fc 9216->128,
ReLU, dropout 0.5, fc 128->10, log_softmax; NLL loss; Adadelta lr 1.0 with StepLR(step_size=1,
gamma=0.7); batch 64 from a shuffled per-sample DataLoader (``num_workers=0``, as the example uses on
a CPU) with ToTensor + Normalize((0.1307,), (0.3081,)); fp32, NCHW; all 60,000 training images (the
example holds out no validation split). torchvision is not a dependency here, so its two transforms
are written out in ``_PerSample.__getitem__``: the same arithmetic, per sample, as the example does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

MEAN, STD = 0.1307, 0.3081  # the example's Normalize constants (MNIST's; kept as the example has them)


class Net(nn.Module):
    """The example's network, layer for layer (1,199,882 parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))  # (B, 1, 28, 28) -> (B, 32, 26, 26)
        x = F.relu(self.conv2(x))  # -> (B, 64, 24, 24)
        x = F.max_pool2d(x, 2)  # -> (B, 64, 12, 12)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)  # (B, 64, 12, 12) -> (B, 9216)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


class _PerSample(Dataset[tuple[torch.Tensor, int]]):
    """uint8 (N, 1, 28, 28) images served one sample at a time, as torchvision's MNIST does."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i].float().div(255)  # ToTensor: (1, 28, 28) uint8 -> float in [0, 1]
        x = (x - MEAN) / STD  # Normalize((0.1307,), (0.3081,))
        return x, int(self.labels[i])


def train_baseline(
    train_images: torch.Tensor, train_labels: torch.Tensor, epochs: int, seed: int
) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """Train epoch by epoch; after each epoch yield ``predict(uint8 images) -> class ids``.

    The caller times the training between yields and may stop iterating (a time budget); nothing
    the caller measures feeds back into training.
    """
    torch.manual_seed(seed)
    model = Net()
    loader = DataLoader(_PerSample(train_images, train_labels), batch_size=64, shuffle=True)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)

    def predict(images_uint8: torch.Tensor) -> torch.Tensor:
        model.eval()
        with torch.no_grad():  # the example's test(): batches of 1000, same normalisation
            chunks = torch.split(images_uint8, 1000)
            out = [model((chunk.float().div(255) - MEAN) / STD).argmax(1) for chunk in chunks]
        model.train()
        return torch.cat(out)

    for _ in range(epochs):
        model.train()
        for x, y in loader:
            optimizer.zero_grad()
            loss = F.nll_loss(model(x), y)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
        scheduler.step()
        yield predict
