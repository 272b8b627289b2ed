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
Brevitas' modules once); the input projections of all steps are one matmul, the four gates'
hidden projections one matmul per step; and the recurrence is ONE autograd node
(:class:`_LSTMSequence`) whose forward applies Brevitas' ``IntQuant`` operations
(``x / scale + zero_point``, round half to even, clamp to the integer range, ``- zero_point``,
``* scale``) in Brevitas' order, and whose backward is the gradient autograd derives for them
(straight-through rounding, zero where clamped; ``sigmoid' = (1 - y) y``, ``tanh' = 1 - y^2``),
written out through time. Forward values equal Brevitas' training-mode forward bit for bit
whenever its float32 arithmetic is exact (the condition the lowering already needs; tested on
three shapes); weight gradients agree to float32 rounding, scale gradients (sums with
cancellation) to ~1e-3 relative. Measured: ~12x ``nn.LSTM`` per step instead of ~54x. Eval
mode, lowering and export run Brevitas' own ``QuantLSTM`` forward.

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
        self.act = fused.activation_impl
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


def _stack(quants: list[_Quant], width: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-gate constants as vectors over concatenated gates of ``width`` units each."""

    def rep(values: list[Tensor]) -> Tensor:
        return torch.cat([v.reshape(1).expand(width) for v in values])

    return (
        rep([q.scale for q in quants]),
        rep([q.zero_point for q in quants]),
        rep([q.min_int for q in quants]),
        rep([q.max_int for q in quants]),
    )


def _fq(x: Tensor, scale: Tensor, k: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, ...]:
    """Brevitas' ``IntQuant.forward`` without autograd: (y, inside, p).

    ``torch.clamp`` equals Brevitas' two ``torch.where`` for lo < hi (NaN stays NaN in both),
    and ``q == r`` is exactly "not clamped" (``lo <= r <= hi``).
    """
    zero_point, lo, hi = k
    y = x / scale
    y = y + zero_point
    r = torch.round(y)
    q = torch.clamp(r, lo, hi)
    p = q - zero_point
    return p * scale, q == r, p


def _fq_back(
    grad: Tensor, x: Tensor, scale: Tensor, inside: Tensor, p: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradient of :func:`_fq`: dx and the two terms of dscale (to be summed).

    ``(grad * scale * inside) / scale == grad * inside`` exactly: the scale is a power of two.
    """
    g_in = grad * inside
    return g_in, grad * p, g_in * x


class _LSTMSequence(torch.autograd.Function):
    """The whole recurrence as one autograd node: forward as :func:`_step` would compute it
    (the same operations, so the same values), backward through time written out with the
    gradients autograd derives for those operations (STE rounding, blocked where clamped,
    ``sigmoid' = (1 - y) * y``, ``tanh' = 1 - y * y``). Saves ~60 autograd nodes per step."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x_proj: Tensor,
        w_hid: Tensor,
        bias: Tensor,
        s_acc: Tensor,
        s_sig: Tensor,
        s_g: Tensor,
        s_c: Tensor,
        s_t: Tensor,
        s_h: Tensor,
        consts: tuple[Any, ...],
    ) -> Tensor:
        k_acc, k_sig, k_g, k_c, k_t, k_h, act_sig, act_g, act_t = consts
        n, steps, four_h = x_proj.shape
        hidden = four_h // 4
        h3 = 3 * hidden
        h = x_proj.new_zeros(n, hidden)
        c = x_proj.new_zeros(n, hidden)
        saved: list[tuple[Tensor, ...]] = []
        for t in range(steps):
            pre = x_proj[:, t] + F.linear(h, w_hid) + bias
            a, m_a, p_a = _fq(pre, s_acc, k_acc)
            ifo_s = act_sig(a[:, :h3])
            g_t = act_g(a[:, h3:])
            ifo, m_ifo, p_ifo = _fq(ifo_s, s_sig, k_sig)
            g, m_g, p_g = _fq(g_t, s_g, k_g)
            i_gate, f_gate, o_gate = (
                ifo[:, :hidden],
                ifo[:, hidden : 2 * hidden],
                ifo[:, 2 * hidden :],
            )
            fcr = f_gate * c
            fc, m_fc, p_fc = _fq(fcr, s_c, k_c)
            igr = i_gate * g
            ig, m_ig, p_ig = _fq(igr, s_c, k_c)
            cr = fc + ig
            c_new, m_c, p_c = _fq(cr, s_c, k_c)
            tcr = act_t(c_new)
            tc, m_t, p_t = _fq(tcr, s_t, k_t)
            hr = o_gate * tc
            h_new, m_h, p_h = _fq(hr, s_h, k_h)
            saved.append(
                (h, c, pre, m_a, p_a, ifo_s, m_ifo, p_ifo, g_t, m_g, p_g, ifo, g)
                + (fcr, m_fc, p_fc, igr, m_ig, p_ig, cr, m_c, p_c, tcr, m_t, p_t, tc, hr, m_h, p_h)
            )
            h, c = h_new, c_new
        ctx.saved = saved
        ctx.save_for_backward(w_hid, s_acc, s_sig, s_g, s_c, s_t, s_h)
        ctx.hidden = hidden
        return h

    @staticmethod
    def backward(ctx: Any, grad_h: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        w_hid, s_acc, s_sig, s_g, s_c, s_t, s_h = ctx.saved_tensors
        hidden = ctx.hidden
        saved = ctx.saved
        steps = len(saved)
        n = grad_h.shape[0]
        d_xproj = grad_h.new_zeros(n, steps, 4 * hidden)
        d_w = torch.zeros_like(w_hid)
        d_b = grad_h.new_zeros(4 * hidden)
        ds_acc = torch.zeros_like(s_acc)
        ds_sig = torch.zeros_like(s_sig)
        ds = {"g": 0.0, "c": 0.0, "t": 0.0, "h": 0.0}
        dh = grad_h
        dc = torch.zeros_like(grad_h)
        for t in range(steps - 1, -1, -1):
            (h, c, pre, m_a, p_a, ifo_s, m_ifo, p_ifo, g_t, m_g, p_g, ifo, g) = saved[t][:13]
            (fcr, m_fc, p_fc, igr, m_ig, p_ig, cr, m_c, p_c, tcr, m_t, p_t, tc, hr, m_h, p_h) = (
                saved[t][13:]
            )
            i_gate, f_gate, o_gate = (
                ifo[:, :hidden],
                ifo[:, hidden : 2 * hidden],
                ifo[:, 2 * hidden :],
            )
            d_hr, gp, gx = _fq_back(dh, hr, s_h, m_h, p_h)
            ds["h"] = ds["h"] + (gp.sum() - gx.sum() / s_h)
            d_o = d_hr * tc
            d_tc = d_hr * o_gate
            d_tcr, gp, gx = _fq_back(d_tc, tcr, s_t, m_t, p_t)
            ds["t"] = ds["t"] + (gp.sum() - gx.sum() / s_t)
            d_cnew = dc + d_tcr * (1 - tcr * tcr)
            d_cr, gp, gx = _fq_back(d_cnew, cr, s_c, m_c, p_c)
            ds_c_step = gp.sum() - gx.sum() / s_c
            d_fcr, gp, gx = _fq_back(d_cr, fcr, s_c, m_fc, p_fc)
            ds_c_step = ds_c_step + (gp.sum() - gx.sum() / s_c)
            d_igr, gp, gx = _fq_back(d_cr, igr, s_c, m_ig, p_ig)
            ds["c"] = ds["c"] + (ds_c_step + (gp.sum() - gx.sum() / s_c))
            d_f = d_fcr * c
            dc = d_fcr * f_gate
            d_i = d_igr * g
            d_g = d_igr * i_gate
            d_ifo_q = torch.cat([d_i, d_f, d_o], dim=1)
            d_ifo_s, gp, gx = _fq_back(d_ifo_q, ifo_s, s_sig, m_ifo, p_ifo)
            ds_sig = ds_sig + (gp.sum(0) - gx.sum(0) / s_sig)
            d_g_t, gp, gx = _fq_back(d_g, g_t, s_g, m_g, p_g)
            ds["g"] = ds["g"] + (gp.sum() - gx.sum() / s_g)
            d_a = torch.cat([d_ifo_s * (1 - ifo_s) * ifo_s, d_g_t * (1 - g_t * g_t)], dim=1)
            d_pre, gp, gx = _fq_back(d_a, pre, s_acc, m_a, p_a)
            ds_acc = ds_acc + (gp.sum(0) - gx.sum(0) / s_acc)
            d_xproj[:, t] = d_pre
            d_b = d_b + d_pre.sum(0)
            d_w = d_w + d_pre.t().mm(h)
            dh = d_pre.mm(w_hid)
        del ctx.saved

        def shaped(value: Any, like: Tensor) -> Tensor:
            return torch.as_tensor(value, dtype=like.dtype, device=like.device).reshape(like.shape)

        return (
            d_xproj,
            d_w,
            d_b,
            ds_acc,
            ds_sig,
            shaped(ds["g"], s_g),
            shaped(ds["c"], s_c),
            shaped(ds["t"], s_t),
            shaped(ds["h"], s_h),
            None,
        )


def fast_lstm_last_hidden(lstm: Any, quant_input: Any) -> Any:
    """Brevitas ``QuantLSTM`` (one layer, batch first) training forward -> the last time
    step's hidden state as an ``IntQuantTensor`` (N, hidden)."""
    from brevitas.quant_tensor import IntQuantTensor

    layer = lstm.layers[0][0]
    hidden = layer.hidden_size
    qx = layer.maybe_quantize_input(quant_input)
    x = qx.value if hasattr(qx, "value") else qx
    gates = (
        layer.input_gate_params,
        layer.forget_gate_params,
        layer.output_gate_params,
        layer.cell_gate_params,
    )  # i, f, o (sigmoid) then g (tanh)
    w_in, w_hid, biases = [], [], []
    for gate in gates:
        w_i, w_h, b = layer.gate_params_fwd(gate, qx)
        w_in.append(w_i.value if hasattr(w_i, "value") else w_i)
        w_hid.append(w_h.value if hasattr(w_h, "value") else w_h)
        biases.append(b.value if hasattr(b, "value") else b)
    w_in_all = torch.cat(w_in)  # (4H, F)
    w_hid_all = torch.cat(w_hid)  # (4H, H)
    bias_all = torch.cat(biases)  # (4H,)

    acc = [
        _Quant(_fused(layer, n), x)
        for n in ("input_acc_quant", "forget_acc_quant", "output_acc_quant", "cell_acc_quant")
    ]
    sig = [
        _Quant(_fused(layer, n), x)
        for n in ("input_sigmoid_quant", "forget_sigmoid_quant", "output_sigmoid_quant")
    ]
    g_q = _Quant(_fused(layer, "cell_tanh_quant"), x)
    c_q = _Quant(_fused(layer, "cell_state_quant"), x)
    ht_q = _Quant(_fused(layer, "hidden_state_tanh_quant"), x)
    h_q = _Quant(_fused(layer, "output_quant"), x)
    acc_k = _stack(acc, hidden)
    sig_k = _stack(sig, hidden)
    c_k = (c_q.scale, c_q.zero_point, c_q.min_int, c_q.max_int)
    g_k = (g_q.scale, g_q.zero_point, g_q.min_int, g_q.max_int)
    ht_k = (ht_q.scale, ht_q.zero_point, ht_q.min_int, ht_q.max_int)
    h_k = (h_q.scale, h_q.zero_point, h_q.min_int, h_q.max_int)

    x_proj = F.linear(x, w_in_all)  # (N, T, 4H): every step's input projection at once
    consts = (
        acc_k[1:],
        sig_k[1:],
        g_k[1:],
        c_k[1:],
        ht_k[1:],
        h_k[1:],
        sig[0].act,
        g_q.act,
        ht_q.act,
    )
    h = _LSTMSequence.apply(
        x_proj, w_hid_all, bias_all, acc_k[0], sig_k[0], g_k[0], c_k[0], ht_k[0], h_k[0], consts
    )
    return IntQuantTensor(
        h, h_q.scale, h_q.zero_point, h_q.bit_width, layer.io_quant.is_signed, True
    )
