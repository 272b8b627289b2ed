// qnet: a quantised LSTM cell that equals Brevitas' QuantLSTM bit for bit.
//
// One step, gates in Brevitas' order i, f, g, o:
//   acc_k = b_k + W_k x_t + U_k h      exact (acc_k_t is wide enough: no rounding, no overflow)
//   pre_k = acc_k                      cast to the gate_acc quantiser type (AP_RND_CONV, AP_SAT)
//   act_k = table_k[bits(pre_k)]       sigmoid / tanh, quantised: one entry per pre_k value
//   fc = f * c;  ig = i * g;  c = fc + ig     each cast to the cell-state type (three roundings)
//   h = o * tanh_table[bits(c)]        cast to the hidden-state (io) type
// Tables are indexed by the mantissa bits with the sign bit inverted (mantissa - min), so the
// first entry belongs to the most negative value.
#ifndef NNET_QNET_LSTM_H_
#define NNET_QNET_LSTM_H_

#include "ap_fixed.h"
#include "hls_stream.h"
#include "nnet_common.h"

namespace nnet {

template <class pre_T, bool SIGNED> inline unsigned qnet_table_index(const pre_T &pre) {
    ap_uint<pre_T::width> idx = pre.range(pre_T::width - 1, 0);
    if (SIGNED) {
        idx[pre_T::width - 1] = !idx[pre_T::width - 1];
    }
    return idx.to_uint();
}

template <class x_T, class h_T, class wi_T, class wh_T, class b_T, class acc_T, class pre_T, class act_T,
          unsigned N_IN, unsigned N_H, bool PRE_SIGNED>
void qnet_lstm_gate(const x_T x[N_IN], const h_T h[N_H], const wi_T wi[N_H * N_IN], const wh_T wh[N_H * N_H],
                    const b_T b[N_H], const act_T table[1 << pre_T::width], act_T act[N_H]) {
    #pragma HLS INLINE
GateLoop:
    for (unsigned j = 0; j < N_H; j++) {
        #pragma HLS UNROLL
        acc_T acc = b[j];
    InputLoop:
        for (unsigned i = 0; i < N_IN; i++) {
            acc += x[i] * wi[j * N_IN + i];
        }
    HiddenLoop:
        for (unsigned i = 0; i < N_H; i++) {
            acc += h[i] * wh[j * N_H + i];
        }
        pre_T pre = acc;
        act[j] = table[qnet_table_index<pre_T, PRE_SIGNED>(pre)];
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void qnet_lstm(const data_T data[CONFIG_T::n_timesteps * CONFIG_T::n_in],
               res_T res[CONFIG_T::return_sequences ? CONFIG_T::n_timesteps * CONFIG_T::n_hidden : CONFIG_T::n_hidden],
               const typename CONFIG_T::wi0_t wi0[CONFIG_T::n_hidden * CONFIG_T::n_in],
               const typename CONFIG_T::wi1_t wi1[CONFIG_T::n_hidden * CONFIG_T::n_in],
               const typename CONFIG_T::wi2_t wi2[CONFIG_T::n_hidden * CONFIG_T::n_in],
               const typename CONFIG_T::wi3_t wi3[CONFIG_T::n_hidden * CONFIG_T::n_in],
               const typename CONFIG_T::wh0_t wh0[CONFIG_T::n_hidden * CONFIG_T::n_hidden],
               const typename CONFIG_T::wh1_t wh1[CONFIG_T::n_hidden * CONFIG_T::n_hidden],
               const typename CONFIG_T::wh2_t wh2[CONFIG_T::n_hidden * CONFIG_T::n_hidden],
               const typename CONFIG_T::wh3_t wh3[CONFIG_T::n_hidden * CONFIG_T::n_hidden],
               const typename CONFIG_T::b0_t b0[CONFIG_T::n_hidden], const typename CONFIG_T::b1_t b1[CONFIG_T::n_hidden],
               const typename CONFIG_T::b2_t b2[CONFIG_T::n_hidden], const typename CONFIG_T::b3_t b3[CONFIG_T::n_hidden],
               const typename CONFIG_T::act0_t table0[1 << CONFIG_T::pre0_t::width],
               const typename CONFIG_T::act1_t table1[1 << CONFIG_T::pre1_t::width],
               const typename CONFIG_T::act2_t table2[1 << CONFIG_T::pre2_t::width],
               const typename CONFIG_T::act3_t table3[1 << CONFIG_T::pre3_t::width],
               const typename CONFIG_T::tanhc_t tanh_table[1 << CONFIG_T::cell_t::width]) {
    static const unsigned T = CONFIG_T::n_timesteps;
    static const unsigned N_IN = CONFIG_T::n_in;
    static const unsigned N_H = CONFIG_T::n_hidden;
    typedef typename CONFIG_T::h_t h_T;
    typedef typename CONFIG_T::cell_t cell_T;

    h_T h[N_H];
    cell_T c[N_H];
    #pragma HLS ARRAY_PARTITION variable = h complete
    #pragma HLS ARRAY_PARTITION variable = c complete
InitLoop:
    for (unsigned j = 0; j < N_H; j++) {
        #pragma HLS UNROLL
        h[j] = 0;
        c[j] = 0;
    }

TimeLoop:
    for (unsigned t = 0; t < T; t++) {
        data_T x[N_IN];
        #pragma HLS ARRAY_PARTITION variable = x complete
        for (unsigned i = 0; i < N_IN; i++) {
            #pragma HLS UNROLL
            // The input is (T, N_IN) time-major, or its transpose (N_IN, T) (channels last).
            x[i] = CONFIG_T::in_time_major ? data[t * N_IN + i] : data[i * T + t];
        }
        typename CONFIG_T::act0_t act_i[N_H];
        typename CONFIG_T::act1_t act_f[N_H];
        typename CONFIG_T::act2_t act_g[N_H];
        typename CONFIG_T::act3_t act_o[N_H];
        qnet_lstm_gate<data_T, h_T, typename CONFIG_T::wi0_t, typename CONFIG_T::wh0_t, typename CONFIG_T::b0_t,
                       typename CONFIG_T::acc0_t, typename CONFIG_T::pre0_t, typename CONFIG_T::act0_t, N_IN, N_H,
                       CONFIG_T::pre0_signed>(x, h, wi0, wh0, b0, table0, act_i);
        qnet_lstm_gate<data_T, h_T, typename CONFIG_T::wi1_t, typename CONFIG_T::wh1_t, typename CONFIG_T::b1_t,
                       typename CONFIG_T::acc1_t, typename CONFIG_T::pre1_t, typename CONFIG_T::act1_t, N_IN, N_H,
                       CONFIG_T::pre1_signed>(x, h, wi1, wh1, b1, table1, act_f);
        qnet_lstm_gate<data_T, h_T, typename CONFIG_T::wi2_t, typename CONFIG_T::wh2_t, typename CONFIG_T::b2_t,
                       typename CONFIG_T::acc2_t, typename CONFIG_T::pre2_t, typename CONFIG_T::act2_t, N_IN, N_H,
                       CONFIG_T::pre2_signed>(x, h, wi2, wh2, b2, table2, act_g);
        qnet_lstm_gate<data_T, h_T, typename CONFIG_T::wi3_t, typename CONFIG_T::wh3_t, typename CONFIG_T::b3_t,
                       typename CONFIG_T::acc3_t, typename CONFIG_T::pre3_t, typename CONFIG_T::act3_t, N_IN, N_H,
                       CONFIG_T::pre3_signed>(x, h, wi3, wh3, b3, table3, act_o);
    CellLoop:
        for (unsigned j = 0; j < N_H; j++) {
            #pragma HLS UNROLL
            cell_T fc = act_f[j] * c[j];
            cell_T ig = act_i[j] * act_g[j];
            c[j] = fc + ig;
            typename CONFIG_T::tanhc_t tanh_c = tanh_table[qnet_table_index<cell_T, CONFIG_T::cell_signed>(c[j])];
            h[j] = act_o[j] * tanh_c;
            if (CONFIG_T::return_sequences) {
                // (T, N_H) time-major, or its transpose (N_H, T) (channels last).
                res[CONFIG_T::out_time_major ? t * N_H + j : j * T + t] = h[j];
            }
        }
    }
    if (!CONFIG_T::return_sequences) {
        for (unsigned j = 0; j < N_H; j++) {
            #pragma HLS UNROLL
            res[j] = h[j];
        }
    }
}

} // namespace nnet

#endif
