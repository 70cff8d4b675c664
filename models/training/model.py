"""The plate reader's network: a small CRNN with a 1-D convolutional head.

Input [N, 1, 32, 128] grey in -1..1; output [N, 32, 37]: per time step (4
input columns each) a softmax over the CTC blank (class 0) and A-Z, 0-9
(classes 1 to 36, the order of src/read/ppocr.rs PLATE_CHARS). No recurrent
layer: convolutions only, so that one crop costs well under a millisecond on
one core and the ONNX graph is plain.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from plates import ALPHABET

CLASSES = 1 + len(ALPHABET)
# Channels of the last 2-D stage and of the per-column features.
WIDTH = 128
FEATURES = 160


def _block(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class PlateCRNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            # A strided first layer: full resolution costs the most and holds
            # little a 3x3 kernel on 2x2 steps does not see.
            nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),  # 16 x 64
            *_block(16, 32), nn.MaxPool2d(2),  # 8 x 32
            *_block(32, 64),
            *_block(64, 64), nn.MaxPool2d((2, 1)),  # 4 x 32
            # crnn-2: the last two stages wider than crnn-1 (96 -> 128, 128 ->
            # 160): they run on 4x32 cells, so the width costs little time.
            *_block(64, WIDTH),
            # Collapse the height: each column becomes one time step.
            nn.Conv2d(WIDTH, FEATURES, (4, 1), bias=False), nn.BatchNorm2d(FEATURES), nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(
            nn.Conv1d(FEATURES, FEATURES, 3, padding=1), nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Conv1d(FEATURES, FEATURES, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv1d(FEATURES, CLASSES, 1),
        )

    def logits(self, x):
        f = self.features(x).squeeze(2)  # [N, FEATURES, T]
        return self.head(f)  # [N, C, T]

    def log_probs(self, x):
        """[T, N, C] log-softmax, as CTCLoss wants it."""
        return self.logits(x).permute(2, 0, 1).log_softmax(2)

    def forward(self, x):
        """[N, T, C] probabilities: what the exported model returns."""
        return self.logits(x).permute(0, 2, 1).softmax(2)


def ctc_targets(labels):
    idx = {c: i + 1 for i, c in enumerate(ALPHABET)}
    flat = [idx[c] for l in labels for c in l]
    return torch.tensor(flat, dtype=torch.long), torch.tensor([len(l) for l in labels], dtype=torch.long)


def greedy_decode(probs: np.ndarray):
    out = []
    for p in probs:
        best = p.argmax(1)
        s, prev = [], 0
        for b in best:
            if b != prev and b != 0:
                s.append(ALPHABET[b - 1])
            prev = b
        out.append("".join(s))
    return out
