"""The PyTorch peer of the SimCLR train step, for benchmarks/train_step.py --compare-torch.

The same model as contrastive_jax/models/resnet.py (CIFAR stem 3x3 conv, BasicBlock / Bottleneck,
1x1 projection shortcuts, BN eps 1e-5, zero-init last BN scale per block, global average pool), the
same projector (Linear -> BN -> ReLU per hidden layer, Linear -> BN without affine parameters) and
online probe (Linear on detached features), NT-Xent over both views in one forward, and LARS
(momentum 0.9, weight decay and trust ratio skip biases/BN parameters and the probe, as
contrastive_jax/optim.py). channels_last memory format (oneDNN's preferred layout on CPU).

torch is NOT a project dependency. Install it only for benchmarking, e.g. in a throwaway venv that
also sees the project's packages:

    python3.11 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy
    echo "$PWD/.venv/lib/python3.11/site-packages" > \\
      /tmp/torchvenv/lib/python3.11/site-packages/project.pth
    /tmp/torchvenv/bin/python benchmarks/train_step.py --compare-torch
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _bn(c, zero=False):
  bn = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)  # torch momentum 0.1 == flax decay 0.9
  if zero:
    nn.init.zeros_(bn.weight)
  return bn


def _conv(cin, cout, k, stride=1):
  conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
  nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
  return conv


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, cin, filters, stride):
    super().__init__()
    self.conv1, self.norm1 = _conv(cin, filters, 3, stride), _bn(filters)
    self.conv2, self.norm2 = _conv(filters, filters, 3), _bn(filters, zero=True)
    self.proj = None
    if stride != 1 or cin != filters:
      self.proj = nn.Sequential(_conv(cin, filters, 1, stride), _bn(filters))

  def forward(self, x):
    y = F.relu(self.norm1(self.conv1(x)))
    y = self.norm2(self.conv2(y))
    return F.relu(y + (x if self.proj is None else self.proj(x)))


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, cin, filters, stride):
    super().__init__()
    out = filters * 4
    self.conv1, self.norm1 = _conv(cin, filters, 1), _bn(filters)
    self.conv2, self.norm2 = _conv(filters, filters, 3, stride), _bn(filters)
    self.conv3, self.norm3 = _conv(filters, out, 1), _bn(out, zero=True)
    self.proj = None
    if stride != 1 or cin != out:
      self.proj = nn.Sequential(_conv(cin, out, 1, stride), _bn(out))

  def forward(self, x):
    y = F.relu(self.norm1(self.conv1(x)))
    y = F.relu(self.norm2(self.conv2(y)))
    y = self.norm3(self.conv3(y))
    return F.relu(y + (x if self.proj is None else self.proj(x)))


# (stage sizes, block, base widths): contrastive_jax/models/resnet.py's builders.
ARCHS = {
  "resnet18": ((2, 2, 2, 2), BasicBlock, (64, 128, 256, 512)),
  "resnet50": ((3, 4, 6, 3), Bottleneck, (64, 128, 256, 512)),
  "resnet_tiny": ((1, 1, 1, 1), BasicBlock, (16, 32, 64, 128)),
}


class SimCLRNet(nn.Module):
  def __init__(self, arch, hidden_dims, out_dim, num_classes=10):
    super().__init__()
    stages, block, widths = ARCHS[arch]
    layers = [_conv(3, widths[0], 3), _bn(widths[0]), nn.ReLU()]  # CIFAR stem
    cin = widths[0]
    for i, n in enumerate(stages):
      for j in range(n):
        layers.append(block(cin, widths[i], 2 if i > 0 and j == 0 else 1))
        cin = widths[i] * block.expansion
    self.encoder = nn.Sequential(*layers)
    head = []
    for h in hidden_dims:
      head += [nn.Linear(cin if not head else head[-3].out_features, h, bias=False)]
      head += [nn.BatchNorm1d(h, eps=1e-5), nn.ReLU()]
    last_in = hidden_dims[-1] if hidden_dims else cin
    head += [nn.Linear(last_in, out_dim, bias=False), nn.BatchNorm1d(out_dim, affine=False)]
    self.projector = nn.Sequential(*head)
    self.probe = nn.Linear(cin, num_classes)

  def forward(self, x):
    h = self.encoder(x).mean(dim=(2, 3))
    return self.projector(h), self.probe(h.detach())


def nt_xent(z1, z2, temperature):
  n = z1.shape[0]
  u = F.normalize(torch.cat([z1, z2]), dim=1)
  s = u @ u.T / temperature
  s.fill_diagonal_(float("-inf"))
  target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
  return F.cross_entropy(s, target)


class LARS(torch.optim.Optimizer):
  """SGD + momentum with layer-wise trust ratio (You et al. 2017); `adapt=False` groups skip weight
  decay and the trust ratio (biases, BN, the probe), as contrastive_jax/optim.py."""

  def __init__(self, groups, lr, momentum=0.9, weight_decay=1e-6, trust=0.001):
    super().__init__(groups, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, adapt=True))
    self.trust = trust

  @torch.no_grad()
  def step(self):
    for g in self.param_groups:
      for p in g["params"]:
        if p.grad is None:
          continue
        d = p.grad
        if g["adapt"]:
          d = d.add(p, alpha=g["weight_decay"])
          pn, dn = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
          ratio = torch.where((pn > 0) & (dn > 0), self.trust * pn / dn, torch.ones_like(pn))
          d = d * ratio
        buf = self.state[p].setdefault("mom", torch.zeros_like(p))
        buf.mul_(g["momentum"]).add_(d)
        p.add_(buf, alpha=-g["lr"])


def make_step(arch, batch_size, image_size, hidden_dims, out_dim, temperature, lr=0.3):
  """A () -> loss callable running one training step on fixed synthetic data."""
  torch.manual_seed(0)
  net = SimCLRNet(arch, hidden_dims, out_dim).to(memory_format=torch.channels_last)
  adapt, skip = [], []
  for name, p in net.named_parameters():
    (skip if p.ndim == 1 or name.startswith("probe") else adapt).append(p)
  opt = LARS([dict(params=adapt), dict(params=skip, adapt=False)], lr=lr)
  shape = (2 * batch_size, 3, image_size, image_size)
  x = torch.rand(shape).contiguous(memory_format=torch.channels_last)
  labels = torch.randint(0, 10, (2 * batch_size,))

  def step():
    z, logits = net(x)
    loss = nt_xent(z[:batch_size], z[batch_size:], temperature) + F.cross_entropy(logits, labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()

  return step
