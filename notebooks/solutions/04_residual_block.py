"""Reference solutions for notebook 04's exercises (open this when stuck).

Each block below replaces the exercise cell of the same name; CI runs the notebook with them.
"""

# %% exercise: basic_block_forward
def basic_block_forward(block, x):
    """y = relu(F(x) + shortcut(x)) for a minires BasicBlock, or y = relu(F(x)) when block.plain,
    with F(x) = bn2(conv2(relu(bn1(conv1(x))))).

    x: Tensor (N, C_in, H, W)  ->  y: Tensor (N, C_out, ceil(H / stride), ceil(W / stride))
    """
    out = block.relu(block.bn1(block.conv1(x)))
    out = block.bn2(block.conv2(out))          # F(x): no ReLU yet
    if not block.plain:
        out = out + block.shortcut(x)          # add first ...
    return block.relu(out)                     # ... then the ReLU


# %% exercise: option_a_shortcut
def option_a_shortcut(x, out_channels, stride):
    """Option A: y[:, :C] = x[:, :, ::stride, ::stride], y[:, C:] = 0 (no parameters).

    x: Tensor (N, C, H, W)  ->  y: Tensor (N, out_channels, ceil(H / stride), ceil(W / stride))
    """
    y = x[:, :, ::stride, ::stride]                              # keep every stride-th pixel
    return F.pad(y, (0, 0, 0, 0, 0, out_channels - x.shape[1]))  # (W), (H), then C: zeros after
