"""A faster training forward for the zoo's ``QuantLSTM`` with Brevitas' exact quantisers.

Where the time went (one thread, batches of 64 x 40 x 1, hidden 32; Brevitas 0.13.4): a
``QuantLSTM`` training step took ~54x a plain ``nn.LSTM`` step. ~75 % of its forward was the 13
quantiser calls per time step, each recomputing a scale that does not change within a forward
pass (learned log2 parameter -> ceil -> power of two -> threshold / integer scale, ``min_int``
and ``max_int`` from the bit width) through several module and autograd-Function layers; the
rest was 8 small matmuls per step and the ~100-node-per-step autograd graph they build, whose
backward took as long again.

Here each cell quantiser's scale is computed ONCE per forward by its own Brevitas
``scaling_impl`` (bit width, integer threshold, zero point and integer range, constants, by
Brevitas' modules once), and a gate's shared input/hidden weight quantiser computes its scale
once for both weights; the input projections of all steps are one matmul, the four gates'
hidden projections one matmul per step; and the recurrence is ONE autograd node
(:class:`_LSTMSequence`) whose forward applies Brevitas' ``IntQuant`` operations (``x /
scale``, round half to even, clamp to the integer range, ``* scale``) in Brevitas' order, and
whose backward is the gradient autograd derives for them (straight-through rounding, zero
where clamped; ``sigmoid' = (1 - y) y``, ``tanh' = 1 - y^2``), written out through time.
Forward values equal Brevitas' training-mode forward bit for bit whenever its float32
arithmetic is exact (the condition the lowering already needs; tested on four shapes); weight
gradients agree to float32 rounding, scale gradients (sums with cancellation) to ~1e-3
relative. Every small operation costs ~1-3 us of Python and dispatch whatever its size, so the
work per time step is as few operations as possible: ~35 in the forward, 14 in the backward.
Measured (``python benchmarks/accuracy.py --lstm-timing --threads 1``): one training epoch
7.1-7.8x ``nn.LSTM``'s (~60x with Brevitas' own forward). Eval mode, lowering and export run
Brevitas' own ``QuantLSTM`` forward.

It applies only when every cell quantiser has a scale that does not depend on its input
(``ParameterScaling``/``ConstScaling``: the zoo's ``*MinMaxInit``/``*MaxInit`` quantisers), a
constant bit width, zero point 0, ``RoundSte`` and ``TensorClamp``; :func:`supports` checks, and
the model falls back to Brevitas' forward otherwise.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["supports", "fast_lstm_last_hidden"]

_CELL_QUANTS = (
    "input_acc_quant",
    "forget_acc_quant",
    "cell_acc_quant",
    "output_acc_quant",
    "input_sigmoid_quant",
    "forget_sigmoid_quant",
    "cell_tanh_quant",
    "output_sigmoid_quant",
    "hidden_state_tanh_quant",
    "cell_state_quant",
    "output_quant",
)


def _fused(layer: Any, name: str) -> Any:
    return getattr(layer.cell, name).fused_activation_quant_proxy


def supports(lstm: Any) -> bool:
    """Whether :func:`fast_lstm_last_hidden` reproduces this ``QuantLSTM`` exactly."""
    from brevitas.core.bit_width import BitWidthConst
    from brevitas.core.function_wrapper import RoundSte, TensorClamp
    from brevitas.core.function_wrapper.misc import Identity
    from brevitas.core.quant.delay import _NoDelay
    from brevitas.core.scaling import ConstScaling, ParameterScaling
    from brevitas.core.zero_point import ZeroZeroPoint

    if len(lstm.layers) != 1 or len(lstm.layers[0]) != 1:
        return False
    layer = lstm.layers[0][0]
    if layer.cell.cifg or layer.reverse_input or not layer.cell.batch_first:
        return False
    for name in _CELL_QUANTS:
        fused = _fused(layer, name)
        if fused is None:
            return False
        act_kind = (
            torch.nn.Sigmoid if "sigmoid" in name else torch.nn.Tanh if "tanh" in name else None
        )
        if act_kind is None:
            if not isinstance(fused.activation_impl, Identity | torch.nn.Identity):
                return False
        elif (
            not isinstance(fused.activation_impl, act_kind)
            or type(fused.activation_impl).forward is not act_kind.forward
        ):
            return False  # a subclass computing something else
        tq = fused.tensor_quant
        iq = getattr(tq, "int_quant", None)
        if iq is None or getattr(tq, "observer_only", False):
            return False
        if not isinstance(tq.scaling_impl, ParameterScaling | ConstScaling):
            return False
        if not isinstance(tq.zero_point_impl, ZeroZeroPoint):
            return False
        if not isinstance(tq.msb_clamp_bit_width_impl, BitWidthConst):
            return False
        if not (
            isinstance(iq.float_to_int_impl, RoundSte)
            and isinstance(iq.tensor_clamp_impl, TensorClamp)
            and isinstance(iq.input_view_impl, Identity | torch.nn.Identity)
            and isinstance(iq.delay_wrapper.delay_impl, _NoDelay)
        ):
            return False
    return True


class _Quant:
    """One Brevitas quantiser's (scale, zero point, integer range) for one forward pass.

    The scale comes from the quantiser's own ``scaling_impl`` at every forward (it is learned);
    bit width, integer threshold, zero point and integer range are constants
    (``BitWidthConst``, ``ZeroZeroPoint``, checked by :func:`supports`), computed by Brevitas'
    modules once per device and kept on the proxy.
    """

    def __init__(self, fused: Any, like: Tensor) -> None:
        tq = fused.tensor_quant
        cache = getattr(fused, "_qnet_fast_consts", None)
        if cache is None or cache[0] != like.device:
            bit_width = tq.msb_clamp_bit_width_impl()
            int_threshold = tq.int_scaling_impl(bit_width)
            scale = tq.scaling_impl(like, int_threshold)
            zero_point = tq.zero_point_impl(like, scale, bit_width)
            consts = (
                bit_width.detach(),
                int_threshold.detach(),
                zero_point.detach(),
                tq.int_quant.min_int(bit_width).detach(),
                tq.int_quant.max_int(bit_width).detach(),
            )
            fused._qnet_fast_consts = cache = (like.device, consts)
        self.bit_width, int_threshold, self.zero_point, self.min_int, self.max_int = cache[1]
        self.scale = tq.scaling_impl(like, int_threshold)


def _stack(values: list[Tensor], width: int) -> Tensor:
    """Per-gate scalars as one vector over concatenated gates of ``width`` units each."""
    return torch.cat([v.reshape(1).expand(width) for v in values])


class _Quantiser:
    """One quantisation site over all time steps: Brevitas' ``IntQuant.forward`` (zero point
    0) per step, ``y = clamp(round(x / s), lo, hi) * s``, keeping for the backward the input
    ``x``, the integers ``p`` and the "not clamped" mask (0/1 floats) in (T, N, C) buffers.

    Brevitas also adds and subtracts the zero point; with a zero point of 0 that changes at
    most the sign of a zero, which compares equal and never reaches a non-zero value here (no
    division by it). ``torch.clamp`` equals Brevitas' two ``torch.where`` for lo < hi (NaN
    stays NaN in both), and ``p == r`` is exactly "not clamped".
    """

    def __init__(self, like: Tensor, steps: int, width: int, scale: Tensor, lo: Any, hi: Any):
        n = like.shape[1]
        self.scale, self.lo, self.hi = scale, lo, hi
        self.x, self.p, self.mask = (like.new_empty(steps, n, width) for _ in range(3))
        self.xs, self.ps, self.masks = self.x.unbind(0), self.p.unbind(0), self.mask.unbind(0)
        self.tmp = like.new_empty(n, width)

    def __call__(self, t: int, out: Tensor) -> None:
        """Quantise ``self.xs[t]`` (already written) into ``out``."""
        tmp, p = self.tmp, self.ps[t]
        torch.div(self.xs[t], self.scale, out=tmp)
        tmp.round_()
        torch.clamp(tmp, self.lo, self.hi, out=p)
        torch.eq(p, tmp, out=self.masks[t])
        torch.mul(p, self.scale, out=out)

    def saved(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.x, self.p, self.mask


def _bound(values: list[Tensor], width: int) -> Tensor | float:
    """A clamp bound over concatenated gates: one float when all gates share it (the faster
    ``clamp``), else a per-column vector."""
    floats = {float(v) for v in values}
    if len(floats) == 1:
        return floats.pop()
    return _stack(values, width)


def _scale_grad(g: Tensor, p: Tensor, mx: Tensor, scale: Tensor) -> Tensor:
    """d loss / d (scalar) scale of ``clamp(round(x / s)) * s`` summed over time and batch:
    ``sum(g * p) - sum(g * mx) / s`` with ``mx = inside * x`` (straight-through rounding,
    blocked where clamped), as two dot products."""
    gp = torch.dot(g.reshape(-1), p.reshape(-1))
    return (gp - torch.dot(g.reshape(-1), mx.reshape(-1)) / scale).reshape(scale.shape)


class _LSTMSequence(torch.autograd.Function):
    """The whole recurrence as one autograd node, gates in the order (o, i, f, g).

    Forward: Brevitas' cell operations in Brevitas' order (``x W_ih + b`` for all steps at once,
    then ``+ h W_hh`` per step: the same value whenever the sums are exact), each quantiser a
    :class:`_Quantiser` (the four gate quantisers at once with per-column scales, the two
    cell-state products' at once: the same elementwise operations, so the same values), every
    intermediate kept in a (T, N, C) buffer.

    Backward: the gradient autograd derives for those operations (STE rounding, blocked where
    clamped; ``sigmoid' = (1 - y) y`` and ``tanh' = 1 - y^2`` in ATen's order). A 0/1 mask
    factor can move in a product without changing its value (``(g m) a == g (m a)`` for
    ``m`` in {0, 1}), so the masks are folded into the factors through which the gradient flows,
    for all steps at once before the loop; the loop through time is then 10 small operations
    per step plus 4 accumulating the per-column (gate) scale gradients, and the weight, bias
    and scalar-scale gradients are reductions after it. (Python and dispatch dominate: a small
    operation costs ~1-3 us whatever its size, while a product over the whole sequence of
    (T, N, 4H) costs ~80-160 us here, memory-bound.)
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x_proj: Tensor,
        w_hid: Tensor,
        bias: Tensor,
        s_acc: Tensor,
        s_act: Tensor,
        s_c: Tensor,
        s_t: Tensor,
        s_h: Tensor,
        bounds: tuple[Any, ...],
    ) -> Tensor:
        lo_acc, hi_acc, lo_act, hi_act, lo_c, hi_c, lo_t, hi_t, lo_h, hi_h = bounds
        n, steps, four_h = x_proj.shape
        hid = four_h // 4
        h3 = 3 * hid
        like = x_proj.transpose(0, 1)
        # x W_ih + b for every step at once; + h W_hh per step (one addmm): Brevitas adds
        # (x W_ih + h W_hh) + b, the same value whenever the sums are exact
        xb = torch.add(like, bias, out=like.new_empty(like.shape)).unbind(0)  # T x (N, 4H)
        q_acc = _Quantiser(like, steps, four_h, s_acc, lo_acc, hi_acc)
        q_act = _Quantiser(like, steps, four_h, s_act, lo_act, hi_act)  # sigmoid o i f, tanh g
        q_prod = _Quantiser(like, steps, 2 * hid, s_c, lo_c, hi_c)  # f * c | i * g
        q_c = _Quantiser(like, steps, hid, s_c, lo_c, hi_c)
        q_t = _Quantiser(like, steps, hid, s_t, lo_t, hi_t)
        q_h = _Quantiser(like, steps, hid, s_h, lo_h, hi_h)
        new = like.new_empty
        acc, gates, prod = new(steps, n, four_h), new(steps, n, four_h), new(steps, n, 2 * hid)
        tanh_q = new(steps, n, hid)
        cells, hs = new(steps + 1, n, hid), new(steps + 1, n, hid)  # [0]: the initial zeros
        cells[0].zero_()
        hs[0].zero_()
        w_t = w_hid.t()
        pre_s, acc_s, gates_s, prod_s = q_acc.xs, acc.unbind(0), gates.unbind(0), prod.unbind(0)
        o_s, i_s, f_s, g_s = (gates[..., k * hid : (k + 1) * hid].unbind(0) for k in range(4))
        fc_raw_s, ig_raw_s = q_prod.x[..., :hid].unbind(0), q_prod.x[..., hid:].unbind(0)
        fc_s, ig_s = prod[..., :hid].unbind(0), prod[..., hid:].unbind(0)
        sig_in, tanh_in = acc[..., :h3].unbind(0), acc[..., h3:].unbind(0)
        sig_out, tanh_out = q_act.x[..., :h3].unbind(0), q_act.x[..., h3:].unbind(0)
        c_s, h_s, tanh_q_s = cells.unbind(0), hs.unbind(0), tanh_q.unbind(0)
        mul, add = torch.mul, torch.add
        for t in range(steps):
            torch.addmm(xb[t], h_s[t], w_t, out=pre_s[t])
            q_acc(t, acc_s[t])
            torch.sigmoid(sig_in[t], out=sig_out[t])
            torch.tanh(tanh_in[t], out=tanh_out[t])
            q_act(t, gates_s[t])
            mul(f_s[t], c_s[t], out=fc_raw_s[t])
            mul(i_s[t], g_s[t], out=ig_raw_s[t])
            q_prod(t, prod_s[t])
            add(fc_s[t], ig_s[t], out=q_c.xs[t])
            q_c(t, c_s[t + 1])
            torch.tanh(c_s[t + 1], out=q_t.xs[t])
            q_t(t, tanh_q_s[t])
            mul(o_s[t], tanh_q_s[t], out=q_h.xs[t])
            q_h(t, h_s[t + 1])
        ctx.save_for_backward(
            w_hid, s_acc, s_act, s_c, s_t, s_h, gates, tanh_q, cells, hs,
            *q_acc.saved(), *q_act.saved(), *q_prod.saved(), *q_c.saved(), *q_t.saved(),
            *q_h.saved(),
        )  # fmt: skip
        return hs[steps].clone()

    @staticmethod
    def backward(ctx: Any, grad_h: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        (w_hid, s_acc, s_act, s_c, s_t, s_h, gates, tanh_q, cells, hs, *rest) = ctx.saved_tensors
        x_acc, p_acc, m_acc, x_act, p_act, m_act, x_prod, p_prod, m_prod = rest[:9]
        x_c, p_c, m_c, x_t, p_t, m_t, x_h, p_h, m_h = rest[9:]
        steps, n, four_h = gates.shape
        hid = four_h // 4
        h3 = 3 * hid
        o, i, f, g = (gates[..., k * hid : (k + 1) * hid] for k in range(4))
        m_fc, m_ig = m_prod[..., :hid], m_prod[..., hid:]
        sig = x_act[..., :h3]
        # The factors the gradient meets, masks folded in (all steps at once):
        a_o = m_h * tanh_q  # d o = g_h * a_o
        a_t = m_h * o  # g_t (into the tanh quantiser) = g_h * a_t
        b_t = m_t * (1 - x_t * x_t)  # d c += g_t * b_t
        m_cfc, m_cig = m_c * m_fc, m_c * m_ig
        f_ifg = gates.new_empty(steps, n, 3, hid)  # d i, d f, d g = g_c * f_ifg
        torch.mul(m_cig, g, out=f_ifg[:, :, 0])
        torch.mul(m_cfc, cells[:-1], out=f_ifg[:, :, 1])
        torch.mul(m_cig, i, out=f_ifg[:, :, 2])
        f_dc = m_cfc * f  # d c of the previous step = g_c * f_dc
        s_fold = torch.empty_like(gates)  # sigmoid': (1 - y) y, the y applied in the loop
        torch.neg(sig, out=s_fold[..., :h3]).add_(1)  # 1 - y, exactly -y + 1
        tanh_g = x_act[..., h3:]
        torch.mul(tanh_g, tanh_g, out=s_fold[..., h3:])
        s_fold[..., h3:].neg_().add_(1)  # tanh': 1 - y^2 (exactly -(y^2) + 1)
        s_fold.mul_(m_act)
        mx_act = m_act * x_act
        new = gates.new_empty
        g_h, g_t, g_c = (new(steps, n, hid) for _ in range(3))
        d_acc = new(steps, n, four_h)
        g_h[steps - 1] = grad_h
        g_h_s, g_t_s, g_c_s = g_h.unbind(0), g_t.unbind(0), g_c.unbind(0)
        a_o_s, a_t_s, b_t_s, f_dc_s = a_o.unbind(0), a_t.unbind(0), b_t.unbind(0), f_dc.unbind(0)
        f_ifg_s, s_fold_s, sig_s = f_ifg.unbind(0), s_fold.unbind(0), sig.unbind(0)
        m_acc_s, d_acc_s = m_acc.unbind(0), d_acc.unbind(0)
        p_acc_s, x_acc_s, p_act_s, mx_act_s = (v.unbind(0) for v in (p_acc, x_acc, p_act, mx_act))
        # this step's gradients into the gate quantisers (o, i, f, g) and the accumulators
        g_act, g_acc = new(n, four_h), new(n, four_h)
        d_o, d_ifg, g_sig = g_act[:, :hid], g_act[:, hid:].unflatten(1, (3, hid)), g_acc[:, :h3]
        # the vector-scale gradients' sums, accumulated per step (cache-sized, no temporaries)
        acc_gp, acc_gx, act_gp, act_gx = (torch.zeros_like(g_act) for _ in range(4))
        mul, mm = torch.mul, torch.mm
        dc = torch.zeros_like(grad_h)
        tmp = new(n, hid)
        for t in range(steps - 1, -1, -1):
            gh, gc = g_h_s[t], g_c_s[t]
            mul(gh, a_o_s[t], out=d_o)
            mul(gh, a_t_s[t], out=g_t_s[t])
            mul(g_t_s[t], b_t_s[t], out=tmp)
            torch.add(dc, tmp, out=gc)
            mul(gc.unsqueeze(1), f_ifg_s[t], out=d_ifg)
            dc = gc * f_dc_s[t]
            mul(g_act, s_fold_s[t], out=g_acc)
            g_sig.mul_(sig_s[t])
            mul(g_acc, m_acc_s[t], out=d_acc_s[t])
            if t:
                mm(d_acc_s[t], w_hid, out=g_h_s[t - 1])
            act_gp.addcmul_(g_act, p_act_s[t])
            act_gx.addcmul_(g_act, mx_act_s[t])
            acc_gp.addcmul_(g_acc, p_acc_s[t])
            acc_gx.addcmul_(d_acc_s[t], x_acc_s[t])
        flat = d_acc.reshape(-1, four_h)
        d_w = flat.t().mm(hs[:-1].reshape(-1, hid))
        # cell-state quantiser: on f*c and i*g (both get d cr = g_c * m_c) and on cr
        ds_c = _scale_grad(
            g_c,
            p_c + m_c * (p_prod[..., :hid] + p_prod[..., hid:]),
            m_c * (x_c + m_fc * x_prod[..., :hid] + m_ig * x_prod[..., hid:]),
            s_c,
        )
        return (
            d_acc.transpose(0, 1),
            d_w,
            flat.sum(0),
            acc_gp.sum(0) - acc_gx.sum(0) / s_acc,
            act_gp.sum(0) - act_gx.sum(0) / s_act,
            ds_c,
            _scale_grad(g_t, p_t, m_t * x_t, s_t),
            _scale_grad(g_h, p_h, m_h * x_h, s_h),
            None,
        )


def _shares_weight_scale(gate: Any) -> bool:
    """Whether the gate's input and hidden weights go through ONE Brevitas weight quantiser
    whose scale comes from its tracked parameters alone (QuantLSTM's default: the scale is the
    abs max over both weights), so one scale computation serves both weights."""
    from brevitas.core.quant.int import RescalingIntQuant
    from brevitas.core.scaling import StatsFromParameterScaling
    from brevitas.core.zero_point import ZeroZeroPoint

    proxy = gate.input_weight.weight_quant
    tq = proxy.tensor_quant
    return (
        gate.hidden_weight.weight_quant.tensor_quant is tq
        and type(tq) is RescalingIntQuant
        and isinstance(tq.scaling_impl, StatsFromParameterScaling)
        and isinstance(tq.zero_point_impl, ZeroZeroPoint)
        and not tq.observer_only
        and proxy.is_quant_enabled
        and not proxy.export_mode
        and not gate.hidden_weight.weight_quant.export_mode
    )


def _plain_int_quant(int_quant: Any) -> bool:
    """Whether a Brevitas ``IntQuant`` is ``(clamp_ste(round_ste(x / s + z)) - z) * s`` with
    nothing else (no input view, no delay), so :func:`_int_quant_ste` computes it."""
    from brevitas.core.function_wrapper import RoundSte, TensorClampSte
    from brevitas.core.function_wrapper.misc import Identity
    from brevitas.core.quant.delay import _NoDelay
    from brevitas.core.quant.int_base import IntQuant

    return (
        type(int_quant) is IntQuant
        and type(int_quant.float_to_int_impl) is RoundSte
        and type(int_quant.tensor_clamp_impl) is TensorClampSte
        and isinstance(int_quant.input_view_impl, Identity | torch.nn.Identity)
        and isinstance(int_quant.delay_wrapper.delay_impl, _NoDelay)
    )


def _int_quant_ste(x: Tensor, scale: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Brevitas' weight ``IntQuant`` (zero point 0; see :class:`_Quantiser` on its sign of
    zero) with Brevitas' own straight-through autograd functions, for several gates' weights
    at once (``scale`` per row)."""
    from brevitas.function.ops_ste import round_ste, tensor_clamp_ste

    return tensor_clamp_ste(round_ste(x / scale), lo, hi) * scale


def _gate_weights(layer: Any, gates: tuple[Any, ...], qx: Any) -> tuple[Tensor, Tensor, Tensor]:
    """The gates' quantised input weights (4H, F), hidden weights (4H, H) and biases (4H,), as
    Brevitas' ``gate_params_fwd`` computes them gate by gate.

    With QuantLSTM's default weight quantisers (one per gate, shared by its input and hidden
    weights, scale from the tracked parameters' statistics) each gate's scale is computed once
    by its own ``scaling_impl``, and the eight weight matrices are quantised in two calls with
    per-row scales: the same elementwise operations, so the same values. Otherwise gate by gate
    through Brevitas.
    """
    from brevitas.quant_tensor import IntQuantTensor

    tqs = [gate.input_weight.weight_quant.tensor_quant for gate in gates]
    consts = []
    if all(
        _shares_weight_scale(g) and _plain_int_quant(t.int_quant)
        for g, t in zip(gates, tqs, strict=True)
    ):
        for gate, tq in zip(gates, tqs, strict=True):
            w_ih = gate.input_weight.weight
            bit_width = tq.msb_clamp_bit_width_impl()
            scale = tq.scaling_impl(w_ih, tq.int_scaling_impl(bit_width))
            zero_point = tq.zero_point_impl(w_ih, scale, bit_width)
            lo, hi = tq.int_quant.min_int(bit_width), tq.int_quant.max_int(bit_width)
            consts.append((scale, zero_point, bit_width, lo, hi))
    if not consts or any(c[0].numel() != 1 for c in consts):  # not per-tensor: gate by gate
        params = [layer.gate_params_fwd(gate, qx) for gate in gates]
        values = [[v.value if hasattr(v, "value") else v for v in p] for p in params]
        return tuple(torch.cat([v[k] for v in values]) for k in range(3))  # type: ignore[return-value]
    hidden = layer.hidden_size
    rows, lo, hi = (_stack([c[k] for c in consts], hidden)[:, None] for k in (0, 3, 4))  # (4H, 1)
    w_in = _int_quant_ste(torch.cat([g.input_weight.weight for g in gates]), rows, lo, hi)
    w_hid = _int_quant_ste(torch.cat([g.hidden_weight.weight for g in gates]), rows, lo, hi)
    biases = []
    for k, (gate, (scale, zero_point, bit_width, _, _)) in enumerate(
        zip(gates, consts, strict=True)
    ):
        proxy = gate.input_weight.weight_quant
        weight = IntQuantTensor(
            w_in[k * hidden : (k + 1) * hidden],
            scale,
            zero_point,
            bit_width,
            proxy.is_signed,
            proxy.training,
        )
        bias = gate.bias_quant(gate.bias, qx, weight)
        biases.append(bias.value if hasattr(bias, "value") else bias)
    return w_in, w_hid, torch.cat(biases)


def fast_lstm_last_hidden(lstm: Any, quant_input: Any) -> Any:
    """Brevitas ``QuantLSTM`` (one layer, batch first) training forward -> the last time
    step's hidden state as an ``IntQuantTensor`` (N, hidden)."""
    from brevitas.quant_tensor import IntQuantTensor

    layer = lstm.layers[0][0]
    hidden = layer.hidden_size
    qx = layer.maybe_quantize_input(quant_input)
    x = qx.value if hasattr(qx, "value") else qx
    gates = (
        layer.output_gate_params,
        layer.input_gate_params,
        layer.forget_gate_params,
        layer.cell_gate_params,
    )  # o, i, f (sigmoid) then g (tanh)
    w_in_all, w_hid_all, bias_all = _gate_weights(layer, gates, qx)

    acc = [
        _Quant(_fused(layer, n), x)
        for n in ("output_acc_quant", "input_acc_quant", "forget_acc_quant", "cell_acc_quant")
    ]
    gate = [
        _Quant(_fused(layer, n), x)
        for n in (
            "output_sigmoid_quant",
            "input_sigmoid_quant",
            "forget_sigmoid_quant",
            "cell_tanh_quant",
        )
    ]
    c_q = _Quant(_fused(layer, "cell_state_quant"), x)
    t_q = _Quant(_fused(layer, "hidden_state_tanh_quant"), x)
    h_q = _Quant(_fused(layer, "output_quant"), x)
    s_acc, s_act = _stack([q.scale for q in acc], hidden), _stack([q.scale for q in gate], hidden)
    bounds = tuple(
        _bound([getattr(q, attr) for q in quants], hidden)
        for quants in (acc, gate, [c_q], [t_q], [h_q])
        for attr in ("min_int", "max_int")
    )
    x_proj = F.linear(x, w_in_all)  # (N, T, 4H): every step's input projection at once
    h = _LSTMSequence.apply(
        x_proj, w_hid_all, bias_all, s_acc, s_act, c_q.scale, t_q.scale, h_q.scale, bounds
    )
    return IntQuantTensor(
        h, h_q.scale, h_q.zero_point, h_q.bit_width, layer.io_quant.is_signed, True
    )
