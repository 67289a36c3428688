"""Residual blocks (He et al. 2015, Sec. 3) and their plain twins.

A residual block computes

    y = relu( F(x) + shortcut(x) )                                    (Eq. 1 and 2 of the paper)

where F, the *residual branch*, is two 3x3 convolutions (``BasicBlock``) or a 1x1-3x3-1x1
"bottleneck" (``Bottleneck``), each followed by batch norm, and the addition happens before
the final ReLU. With ``plain=True`` the same block has no shortcut, y = relu(F(x)): the
paper's "plain" baseline with the same layers and parameters.

When F changes the shape (a stride of 2 halves H and W, and the channels grow), the
shortcut has to change shape too. The paper's three options (Sec. 3.3 and 4.1):

* **A**: identity, subsampled with stride 2 (``x[:, :, ::2, ::2]``), extra channels zero:
  no parameters at all (``ZeroPadShortcut``);
* **B**: a 1x1 convolution + BN (a *projection*) where the shape changes, identity elsewhere;
* **C**: projections for every block.

Two options from later papers, off by default:

* **stochastic depth** (Huang et al. 2016): at train time the whole branch F of block l is
  dropped for a mini-batch with probability p_l (y = relu(shortcut(x))); at test time F is
  kept and scaled by its survival probability 1 - p_l, its expected contribution;
* **pre-activation** (He et al. 2016, "Identity Mappings in Deep Residual Networks"):
  BN and ReLU move *before* each convolution and nothing follows the addition,
  y = F(x) + shortcut(x), so the identity path carries x untouched through the network.

Blocks here are built with PyTorch's default layer initialisation; ``ResNet`` then
applies He initialisation to all of them (``he_init_``).
"""
from .. import functional as F
from .. import nn
from .._checks import shortcut_option
from ..nn import init


def conv3x3(in_channels, out_channels, stride=1, generator=None):
    """3x3 convolution with padding 1 and no bias (the BN that follows has one)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False, generator=generator)


def conv1x1(in_channels, out_channels, stride=1, generator=None):
    """1x1 convolution, no bias."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False, generator=generator)


class ZeroPadShortcut(nn.Module):
    """Option A: y = x subsampled by ``stride``, then zero channels appended up to ``out_channels``.

    y[:, :C] = x[:, :, ::s, ::s],   y[:, C:] = 0,   C = in_channels.   No parameters.
    Its gradient is the upstream gradient of the first C channels, put back at every s-th pixel.
    """

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"ZeroPadShortcut: option A can only add channels, got in_channels={in_channels} > "
                f"out_channels={out_channels}; use a projection shortcut (option 'B' or 'C')"
            )
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        extra = self.out_channels - self.in_channels
        if extra:  # F.pad lists (before, after) pairs from the last dimension: W, H, then C
            x = F.pad(x, (0, 0, 0, 0, 0, extra))
        return x

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def projection(in_channels, out_channels, stride=1, generator=None):
    """Options B and C: a 1x1 convolution (with the block's stride) followed by BN."""
    return nn.Sequential(conv1x1(in_channels, out_channels, stride, generator), nn.BatchNorm2d(out_channels))


def make_shortcut(option, in_channels, out_channels, stride, generator=None):
    """The shortcut module for option 'A', 'B' or 'C', or None for a plain identity."""
    shortcut_option("make_shortcut", option)
    same_shape = stride == 1 and in_channels == out_channels
    if option == "C":
        return projection(in_channels, out_channels, stride, generator)
    if same_shape:
        return None
    if option == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return projection(in_channels, out_channels, stride, generator)


class _Block(nn.Module):
    """What every block shares: the shortcut, the plain switch and stochastic depth."""

    expansion = 1  # out_channels = planes * expansion

    def __init__(self, in_channels, planes, stride, shortcut, plain, drop_prob, generator):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"{type(self).__name__}: drop_prob must be in [0, 1), got {drop_prob}")
        if plain and drop_prob:
            raise ValueError(f"{type(self).__name__}: stochastic depth drops the residual branch; "
                             "a plain block has no shortcut to fall back on")
        self.in_channels, self.planes, self.stride = in_channels, planes, stride
        self.out_channels = planes * self.expansion
        self.plain, self.drop_prob = bool(plain), float(drop_prob)
        self.shortcut_option = shortcut
        # Stochastic depth's coin flips need their own reproducible generator.
        self.generator = generator if generator is not None else init.default_generator()
        shortcut_option(type(self).__name__, shortcut)  # checked for plain blocks too: a typo is a typo

    def _make_downsample(self, generator):
        # Registered as ``downsample`` (torchvision's name) so state-dict keys match torchvision's.
        self.downsample = None if self.plain else make_shortcut(
            self.shortcut_option, self.in_channels, self.out_channels, self.stride, generator)

    def _branch_dropped(self):
        """Stochastic depth, train time: drop the whole branch for this mini-batch with prob. p_l."""
        return self.training and self.drop_prob > 0 and self.generator.random() < self.drop_prob

    def _scale_at_test(self, out):
        """Stochastic depth, test time: keep the branch, scaled by its survival probability."""
        if not self.training and self.drop_prob > 0:
            return out * (1.0 - self.drop_prob)
        return out

    def extra_repr(self):
        extras = []
        if self.plain:
            extras.append("plain=True")
        if self.drop_prob:
            extras.append(f"drop_prob={self.drop_prob:.4g}")
        return ", ".join(extras)


class _PostActivationBlock(_Block):
    """y = relu(F(x) + shortcut(x)), the original paper's block (plain: y = relu(F(x)))."""

    def shortcut(self, x):
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x):
        if self.plain:
            return self.relu(self.residual(x))
        if self._branch_dropped():
            return self.relu(self.shortcut(x))
        out = self._scale_at_test(self.residual(x))
        return self.relu(out + self.shortcut(x))  # the addition comes before the final ReLU

    def zero_residual_(self):
        """Make F(x) = 0 exactly: the last BN outputs 0 * x_hat + 0 (weight and bias 0). The block
        becomes y = relu(shortcut(x)): the identity on non-negative inputs where the shortcut is
        the identity (y = relu(x) for inputs of either sign). Returns self."""
        init.zeros_(self.last_bn.weight)
        init.zeros_(self.last_bn.bias)
        return self


class BasicBlock(_PostActivationBlock):
    """F(x) = BN(conv3x3(relu(BN(conv3x3(x, stride))))): two 3x3 convolutions (Fig. 2 / Fig. 5 left).

    ``BasicBlock(in_channels, planes, stride=1, shortcut='A', plain=False, drop_prob=0.0, generator=None)``
    """

    expansion = 1

    def __init__(self, in_channels, planes, stride=1, shortcut="A", plain=False, drop_prob=0.0, generator=None):
        super().__init__(in_channels, planes, stride, shortcut, plain, drop_prob, generator)
        self.conv1 = conv3x3(in_channels, planes, stride, generator)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes, 1, generator)
        self.bn2 = nn.BatchNorm2d(planes)
        self._make_downsample(generator)

    @property
    def last_bn(self):
        return self.bn2

    def residual(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(_PostActivationBlock):
    """F(x) = 1x1 (reduce to ``planes``) -> 3x3 -> 1x1 (restore to 4*planes), BN after each,
    ReLU between (Fig. 5 right). The stride is on the first 1x1, as in the original paper
    (torchvision's "v1.5" moves it to the 3x3: same parameters, slightly more multiply-adds).
    """

    expansion = 4

    def __init__(self, in_channels, planes, stride=1, shortcut="B", plain=False, drop_prob=0.0, generator=None):
        super().__init__(in_channels, planes, stride, shortcut, plain, drop_prob, generator)
        self.conv1 = conv1x1(in_channels, planes, stride, generator)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, 1, generator)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * 4, 1, generator)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self._make_downsample(generator)

    @property
    def last_bn(self):
        return self.bn3

    def residual(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class _PreActivationBlock(_Block):
    """y = F(a) + shortcut, a = relu(BN(x)) (He et al. 2016): nothing after the addition.

    The identity shortcut carries x itself; a shortcut *module* (option A's subsampling or a
    projection) is applied to the pre-activated a, as in the authors' code.
    """

    def forward(self, x):
        a = self.relu(self.bn1(x))
        if self.plain:
            return self.residual(a)
        shortcut = x if self.downsample is None else self.downsample(a)
        if self._branch_dropped():
            return shortcut
        return self._scale_at_test(self.residual(a)) + shortcut

    def zero_residual_(self):
        """Make F = 0 exactly: the last convolution's weights are 0, so y = shortcut, which is x
        itself (of any sign) for an identity shortcut. (Zeroing the BN before that convolution
        would not do: relu(0 * x_hat + 0) = 0 lets no gradient through the ReLU, and the branch
        could never start to learn.) Returns self."""
        init.zeros_(self.last_conv.weight)
        return self


class PreActBasicBlock(_PreActivationBlock):
    """F(a) = conv3x3(relu(BN(conv3x3(a, stride)))), with a = relu(BN(x)) computed in forward."""

    expansion = 1

    def __init__(self, in_channels, planes, stride=1, shortcut="A", plain=False, drop_prob=0.0, generator=None):
        super().__init__(in_channels, planes, stride, shortcut, plain, drop_prob, generator)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU()
        self.conv1 = conv3x3(in_channels, planes, stride, generator)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, 1, generator)
        self._make_downsample(generator)

    @property
    def last_conv(self):
        return self.conv2

    def residual(self, a):
        return self.conv2(self.relu(self.bn2(self.conv1(a))))


class PreActBottleneck(_PreActivationBlock):
    """F(a) = 1x1 -> BN-ReLU -> 3x3 -> BN-ReLU -> 1x1 (x4 channels), a = relu(BN(x)); stride on the first 1x1."""

    expansion = 4

    def __init__(self, in_channels, planes, stride=1, shortcut="B", plain=False, drop_prob=0.0, generator=None):
        super().__init__(in_channels, planes, stride, shortcut, plain, drop_prob, generator)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU()
        self.conv1 = conv1x1(in_channels, planes, stride, generator)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, 1, generator)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * 4, 1, generator)
        self._make_downsample(generator)

    @property
    def last_conv(self):
        return self.conv3

    def residual(self, a):
        out = self.conv1(a)
        out = self.conv2(self.relu(self.bn2(out)))
        return self.conv3(self.relu(self.bn3(out)))


BLOCKS = {
    ("basic", False): BasicBlock,
    ("bottleneck", False): Bottleneck,
    ("basic", True): PreActBasicBlock,
    ("bottleneck", True): PreActBottleneck,
}


def he_init_(module, mode="fan_in", generator=None):
    """The paper's initialisation, in place: every Conv2d weight ~ N(0, 2/n) (He et al. 2015,
    ``kaiming_normal_``), every BatchNorm2d weight 1 and bias 0. Linear layers keep PyTorch's
    default (the paper does not specify). Returns ``module``.

    ``mode='fan_in'`` (n = k*k*in_channels) is Eq. (10) of the cited paper [13], the forward
    condition, and the default of Caffe's "msra" filler the authors used; torchvision's
    ResNets use ``'fan_out'`` (Eq. 14). [13] shows that either one alone suffices.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu", generator=generator)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            init.ones_(m.weight)
            init.zeros_(m.bias)
    return module
