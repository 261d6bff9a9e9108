"""Experiment 3.3 driver: loop and fast layers, losses, Adam, the network, a mini transfer."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grader.drivers import BaseContext
from grader.kit import speedtest, style, timing

# The mini transfer's start image is drawn after np.random.seed(MINI_TRANSFER_SEED).
MINI_TRANSFER_SEED = 0


@dataclass
class Context(BaseContext):
    experiment: str = "exp_3_3_style_transfer"


def _times(ctx, layer) -> None:
    ctx.extra[ctx.current] = {k: float(getattr(layer, k)) for k in ("forward_time", "backward_time")
                              if isinstance(getattr(layer, k, None), (int, float))}


def _conv(ctx, p, x, fast: bool):
    layer = ctx.module("layers_2").ConvolutionalLayer(p["k"], p["cin"], p["cout"], p["pad"], p["stride"],
                                                      1 if fast else 0)
    layer.init_param()
    layer.load_param(x["weight"], x["bias"])
    forward = layer.forward_speedup if fast else layer.forward_raw
    backward = layer.backward_speedup if fast else layer.backward_raw
    output = forward(x["input"])
    bottom_diff = backward(x["top_diff"])
    _times(ctx, layer)
    return {"output": output, "bottom_diff": bottom_diff, "d_weight": layer.d_weight, "d_bias": layer.d_bias}


def _pool(ctx, p, x, fast: bool):
    layer = ctx.module("layers_2").MaxPoolingLayer(p["k"], p["stride"], 1 if fast else 0)
    forward = layer.forward_speedup if fast else layer.forward_raw
    backward = layer.backward_speedup if fast else layer.backward_raw
    output = forward(x["input"])
    bottom_diff = backward(x["top_diff"])
    _times(ctx, layer)
    return {"output": output, "bottom_diff": bottom_diff}


def content_loss(ctx, p, x):
    layer = ctx.module("layers_3").ContentLossLayer()
    loss = layer.forward(x["input_layer"], x["content_layer"])
    return {"loss": loss, "bottom_diff": layer.backward(x["input_layer"], x["content_layer"])}


def style_loss(ctx, p, x):
    layer = ctx.module("layers_3").StyleLossLayer()
    loss = layer.forward(x["input_layer"], x["style_layer"])
    return {"loss": loss, "bottom_diff": layer.backward(x["input_layer"], x["style_layer"])}


def adam(ctx, p, x):
    opt = ctx.module("style_transfer").AdamOptimizer(p["lr"], x["input"].shape)
    current = x["input"].copy()
    out = {}
    for step, grad in enumerate(x["grads"], start=1):
        current = opt.update(current, grad)
        out[f"step{step}"] = np.array(current, dtype=np.float64)
    return out


def _network(ctx):
    """The submission's VGG19, built and loaded once per probe process (loading reads 576 MB)."""
    st = ctx.module("style_transfer")
    if "vgg" not in ctx.cache:
        vgg = st.VGG19(param_path=ctx.resources["weights"])
        vgg.build_model()
        vgg.init_model()
        vgg.load_model()
        ctx.cache["vgg"] = vgg
    return st, ctx.cache["vgg"]


def network_backward(ctx, p, x):
    _, vgg = _network(ctx)
    feats = vgg.forward(x["input"], ["relu2_1"])
    feature = np.array(feats["relu2_1"], dtype=np.float64)
    grad = vgg.backward(np.ones_like(feats["relu2_1"]), "relu2_1")
    return {"feature": feature, "grad": grad}


def mini_transfer(ctx, p, x):
    """The book's training loop (figure 3.21), p["steps"] Adam steps on p["height"] x p["width"] images.

    Returns losses [steps + 1] (the total loss before each step, then at the final image)
    and image [H, W, 3], the final image as save_image wrote it, read back.
    """
    from PIL import Image
    st, vgg = _network(ctx)
    layers_3 = ctx.module("layers_3")
    h, w = p["height"], p["width"]
    content_image, content_shape = vgg.load_image(ctx.resources["content"], h, w)
    style_image, _ = vgg.load_image(ctx.resources["style"], h, w)
    content_layers, style_layers = style.target_features(vgg, content_image, style_image)
    objective = style.StyleObjective(vgg, layers_3.ContentLossLayer(), layers_3.StyleLossLayer(), content_layers,
                                     style_layers, alpha=style.ALPHA, beta=style.BETA)
    np.random.seed(MINI_TRANSFER_SEED)
    transfer_image = style.start_image("noise", content_image, style_image, st.get_random_img)
    adam_optimizer = st.AdamOptimizer(style.LEARNING_RATE, transfer_image.shape)
    # No cast between steps: the image stays whatever the submission's update returns.
    transfer_image, losses = style.run_adam(objective, adam_optimizer, transfer_image, p["steps"])
    # The loss of the final image, so the last update counts too.
    losses.append(objective.loss(transfer_image))
    path = Path.cwd() / "mini_transfer.jpg"
    vgg.save_image(transfer_image, content_shape, str(path))
    with Image.open(path) as img:
        saved = np.asarray(img.convert("RGB"), dtype=np.float64)
    return {"losses": np.asarray(losses, dtype=np.float64), "image": saved}


def speed_test(ctx, p, x):
    """Raw vs speed-up forward on p["shape"], timed by the grader, not here (kit.timing).

    The layers are built and warmed up first; then each timed input [N, C, H, W] comes
    from the grader's socket in the work folder, and each output goes straight back.
    Returns timed_calls [1], the number of calls made: the times and the check of the
    outputs are the grader's alone.
    """
    layers_2 = ctx.module("layers_2")
    counts = {label: int(item["calls"]) for label, item in p["timed_calls"].items()}
    # Forward only: the check grades the forward speed-up, and the loop conv's backward
    # would add tens of seconds to every grading run.
    with timing.TimedCalls(ctx.submission.parent, ctx.current) as calls:
        done = speedtest.run_timed_speed_test(layers_2, calls, counts, tuple(p["shape"]))
    return {"timed_calls": np.array([done], dtype=np.float64)}


HANDLERS = {
    "conv_raw": lambda c, p, x: _conv(c, p, x, False),
    "conv_fast": lambda c, p, x: _conv(c, p, x, True),
    "pool_raw": lambda c, p, x: _pool(c, p, x, False),
    "pool_fast": lambda c, p, x: _pool(c, p, x, True),
    "content_loss": content_loss,
    "style_loss": style_loss,
    "adam": adam,
    "network_backward": network_backward,
    "mini_transfer": mini_transfer,
    "speed_test": speed_test,
}
