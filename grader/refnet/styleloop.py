"""The kit's own copy of figure 3.21's loop: the total loss and its gradient, Adam and L-BFGS.

Instructor-side only (``grader.refnet`` is not in the student handout): it computes the
gradient the students' ``style_transfer()`` TODOs compute, so shipping it would give the
answer away. The experiment 3.3 runner uses it for its extras (``--kit-loop``, L-BFGS,
other start images, total variation, the fused backward) when the kit is there.

The network and loss layers are reached only through the book's interface (see
:mod:`grader.kit.style`). Images are NCHW arrays ``[1, 3, H, W]`` minus the image mean.
"""
from __future__ import annotations

import time
from typing import Callable, NamedTuple

import numpy as np

from grader.kit.style import (ALPHA, BETA, CONTENT_LOSS_LAYERS, LEARNING_RATE, STYLE_LOSS_LAYERS,  # noqa: F401
                              _forward, total_loss)


class StyleLoss(NamedTuple):
    """One evaluation of the objective at an image ``[1, 3, H, W]``."""
    total: float             # ALPHA * mean(content) + BETA * mean(style) + tv
    content: list[float]     # one content loss per CONTENT_LOSS_LAYERS entry
    style: list[float]       # one style loss per STYLE_LOSS_LAYERS entry
    tv: float                # total-variation term (0 unless a weight is given)
    grad: np.ndarray         # d total / d image, [1, 3, H, W]


def tv_loss_and_grad(image: np.ndarray, weight: float) -> tuple[float, np.ndarray]:
    """Total variation: weight * sum of squared differences of neighbouring pixels.

    image: [N, 3, H, W] -> (loss, gradient of the same shape and dtype).
    """
    grad = np.zeros_like(image)
    if weight == 0:
        return 0.0, grad
    dh = image[:, :, 1:, :] - image[:, :, :-1, :]
    dw = image[:, :, :, 1:] - image[:, :, :, :-1]
    loss = weight * (float(np.sum(np.square(dh, dtype=np.float64)))
                     + float(np.sum(np.square(dw, dtype=np.float64))))
    grad[:, :, 1:, :] += 2 * weight * dh
    grad[:, :, :-1, :] -= 2 * weight * dh
    grad[:, :, :, 1:] += 2 * weight * dw
    grad[:, :, :, :-1] -= 2 * weight * dw
    return loss, grad


class StyleObjective:
    """Figure 3.21's total loss and its gradient with respect to the image.

    content_layers / style_layers: the targets from ``target_features``. ``fused=False``
    is the book: one ``vgg.backward(dloss, layer)`` per loss layer, the gradients summed.
    ``fused=True`` walks ``vgg.layers`` down once with every loss gradient added where it
    enters (the same gradient, about twice as fast). ``tv_weight`` adds a total-variation
    term (0 = the book).
    """

    def __init__(self, vgg, content_loss_layer, style_loss_layer, content_layers: dict, style_layers: dict,
                 alpha: float = ALPHA, beta: float = BETA, tv_weight: float = 0.0, fused: bool = False):
        self.vgg = vgg
        self.content_loss_layer = content_loss_layer
        self.style_loss_layer = style_loss_layer
        self.content_layers = content_layers
        self.style_layers = style_layers
        self.alpha, self.beta, self.tv_weight, self.fused = alpha, beta, tv_weight, fused

    def loss(self, image: np.ndarray) -> float:
        """image [1, 3, H, W] -> the total loss alone (no backward pass)."""
        tv, _ = tv_loss_and_grad(image, self.tv_weight)
        return total_loss(self.vgg, self.content_loss_layer, self.style_loss_layer, self.content_layers,
                          self.style_layers, image, self.alpha, self.beta) + tv

    def __call__(self, image: np.ndarray) -> StyleLoss:
        """image [1, 3, H, W] -> StyleLoss (total, per-layer losses, tv, gradient [1, 3, H, W])."""
        vgg = self.vgg
        features = _forward(vgg, image, CONTENT_LOSS_LAYERS + STYLE_LOSS_LAYERS)
        content_loss, style_loss = [], []
        injected: dict[str, np.ndarray] = {}
        content_diff = np.zeros(image.shape)
        style_diff = np.zeros(image.shape)
        for layer in CONTENT_LOSS_LAYERS:
            # The book collects the losses with np.append into a float64 array.
            content_loss.append(float(self.content_loss_layer.forward(features[layer], self.content_layers[layer])))
            dloss = self.content_loss_layer.backward(features[layer], self.content_layers[layer])
            if self.fused:
                injected[layer] = self.alpha / len(CONTENT_LOSS_LAYERS) * np.asarray(dloss)
            else:
                content_diff += vgg.backward(dloss, layer)
        for layer in STYLE_LOSS_LAYERS:
            style_loss.append(float(self.style_loss_layer.forward(features[layer], self.style_layers[layer])))
            dloss = self.style_loss_layer.backward(features[layer], self.style_layers[layer])
            if self.fused:
                scaled = self.beta / len(STYLE_LOSS_LAYERS) * np.asarray(dloss)
                injected[layer] = injected[layer] + scaled if layer in injected else scaled
            else:
                style_diff += vgg.backward(dloss, layer)
        total = self.alpha * np.mean(content_loss) + self.beta * np.mean(style_loss)
        if self.fused:
            image_diff = self._fused_backward(injected)
        else:
            image_diff = (self.alpha * content_diff / len(CONTENT_LOSS_LAYERS)
                          + self.beta * style_diff / len(STYLE_LOSS_LAYERS))
        tv, tv_grad = tv_loss_and_grad(image, self.tv_weight)
        return StyleLoss(float(total + tv), content_loss, style_loss, tv, np.asarray(image_diff) + tv_grad)

    def _fused_backward(self, injected: dict[str, np.ndarray]) -> np.ndarray:
        # Each layer's backward is linear in top_diff, so summing the loss gradients where
        # they enter and walking down once equals the book's sum of one backward per loss.
        names = list(self.vgg.param_layer_name)
        deepest = max(names.index(name) for name in injected)
        diff = None
        for idx in range(deepest, -1, -1):
            name = names[idx]
            if name in injected:
                diff = injected[name] if diff is None else diff + injected[name]
            diff = self.vgg.layers[name].backward(diff)
        return diff


# on_step(step, loss, updated_image, seconds): step counts from 0, loss is the objective
# at the image before the update, seconds the step's wall-clock time.
StepHook = Callable[[int, StyleLoss, np.ndarray, float], None]


def adam_step(objective: StyleObjective, optimizer, image: np.ndarray,
              dtype=None) -> tuple[np.ndarray, StyleLoss]:
    """One iteration of figure 3.21: loss and gradient at image, then ``optimizer.update``.

    image [1, 3, H, W] -> (updated image [1, 3, H, W], the loss at the old image). With
    ``dtype`` the updated image is cast to it; None keeps what ``update`` returned.
    """
    loss = objective(image)
    updated = optimizer.update(image, loss.grad)
    if dtype is not None:
        updated = np.asarray(updated, dtype=dtype)
    return updated, loss


def run_adam(objective: StyleObjective, optimizer, image: np.ndarray, steps: int, dtype=None,
             on_step: StepHook | None = None) -> tuple[np.ndarray, list[float]]:
    """``steps`` Adam iterations from image [1, 3, H, W] -> (final image, total loss per step).

    The loss of step i is taken at the image before its update, as the book prints it.
    """
    losses: list[float] = []
    for step in range(steps):
        start = time.perf_counter()
        image, loss = adam_step(objective, optimizer, image, dtype)
        losses.append(loss.total)
        if on_step is not None:
            on_step(step, loss, image, time.perf_counter() - start)
    return image, losses


# on_eval(evaluation, iteration, loss, seconds) for every loss evaluation L-BFGS makes;
# on_iteration(iteration, image) after every finished iteration.
EvalHook = Callable[[int, int, StyleLoss, float], None]
IterationHook = Callable[[int, np.ndarray], None]


def run_lbfgs(objective: StyleObjective, image: np.ndarray, image_mean, steps: int, dtype=None,
              on_eval: EvalHook | None = None, on_iteration: IterationHook | None = None, max_corrections: int = 8):
    """scipy's L-BFGS-B on the objective, pixels kept inside [0, 255] once the mean is added back.

    image [1, 3, H, W]; image_mean: 3 values (``vgg.image_mean``); at most ``steps``
    iterations and ``2 * steps`` evaluations. The network sees the image in ``dtype``
    (default: the start image's). Returns (final image [1, 3, H, W] in dtype, scipy's result).
    """
    from scipy.optimize import Bounds, minimize

    shape = image.shape
    dtype = np.dtype(dtype if dtype is not None else image.dtype)
    mean = np.asarray(image_mean, dtype=np.float64).reshape(1, 3, 1, 1)
    lower = np.broadcast_to(-mean, shape).ravel()
    upper = np.broadcast_to(255.0 - mean, shape).ravel()
    x0 = np.clip(np.asarray(image, dtype=np.float64).ravel(), lower, upper)
    state = {"eval": 0, "iter": 0, "t": time.perf_counter()}

    def fun(x):
        loss = objective(x.reshape(shape).astype(dtype))
        now = time.perf_counter()
        if on_eval is not None:
            # L-BFGS may evaluate the loss more than once per iteration.
            on_eval(state["eval"], state["iter"], loss, now - state["t"])
        state["eval"] += 1
        state["t"] = now
        return loss.total, np.asarray(loss.grad, dtype=np.float64).ravel()

    def callback(intermediate):
        x = intermediate.x if hasattr(intermediate, "x") else intermediate
        if on_iteration is not None:
            on_iteration(state["iter"], x.reshape(shape))
        state["iter"] += 1

    result = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=Bounds(lower, upper), callback=callback,
                      options={"maxiter": steps, "maxfun": max(2 * steps, 1), "maxcor": max_corrections})
    return result.x.reshape(shape).astype(dtype), result
