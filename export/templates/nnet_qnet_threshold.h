// qnet: MultiThreshold (BatchNorm + quantised activation), as FINN's MultiThreshold.
//
// For every element x of channel c (channels last: c = flat index % n_chan):
//   increasing[c]:  y = out_base + #{k : x >= thresholds[c, k]}
//   otherwise:      y = out_base + #{k : x <  thresholds[c, k]}
// y is the mantissa (integer bits) of the result type. x and the thresholds share the same
// number of fractional bits, so every comparison is exact; thresholds outside the input's range
// are clipped to [min, max + 1 lsb] on the host (same counts), hence the one wider bit of
// threshold_t.
#ifndef NNET_QNET_THRESHOLD_H_
#define NNET_QNET_THRESHOLD_H_

#include "ap_fixed.h"
#include "hls_stream.h"
#include "nnet_common.h"

namespace nnet {

template <class in_T, class res_T, typename CONFIG_T>
inline res_T qnet_threshold_one(const in_T &x, unsigned c, const typename CONFIG_T::threshold_t thresholds[],
                                const typename CONFIG_T::increasing_t increasing[]) {
    #pragma HLS INLINE
    static const unsigned K = CONFIG_T::n_thresholds;
    ap_uint<CONFIG_T::count_bits> count = 0;
CompareLoop:
    for (unsigned k = 0; k < K; k++) {
        #pragma HLS UNROLL
        if (x >= thresholds[c * K + k]) {
            count++;
        }
    }
    ap_int<res_T::width + 1> mantissa = CONFIG_T::out_base;
    if (increasing[c] != 0) {
        mantissa += count;
    } else {
        mantissa += K - count;
    }
    res_T y;
    y.range(res_T::width - 1, 0) = mantissa.range(res_T::width - 1, 0);
    return y;
}

template <class data_T, class res_T, typename CONFIG_T>
void qnet_threshold(const data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_in],
                    const typename CONFIG_T::threshold_t thresholds[CONFIG_T::n_chan * CONFIG_T::n_thresholds],
                    const typename CONFIG_T::increasing_t increasing[CONFIG_T::n_chan]) {
    #pragma HLS PIPELINE
ThresholdLoop:
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
        #pragma HLS UNROLL
        res[i] = qnet_threshold_one<data_T, res_T, CONFIG_T>(data[i], i % CONFIG_T::n_chan, thresholds, increasing);
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void qnet_threshold(hls::stream<data_T> &data, hls::stream<res_T> &res,
                    const typename CONFIG_T::threshold_t thresholds[CONFIG_T::n_chan * CONFIG_T::n_thresholds],
                    const typename CONFIG_T::increasing_t increasing[CONFIG_T::n_chan]) {
ThresholdStreamLoop:
    for (unsigned i = 0; i < CONFIG_T::n_in / res_T::size; i++) {
        #pragma HLS PIPELINE
        data_T in_data = data.read();
        res_T out_data;
        PRAGMA_DATA_PACK(out_data)
    ThresholdPackLoop:
        for (unsigned j = 0; j < res_T::size; j++) {
            #pragma HLS UNROLL
            out_data[j] = qnet_threshold_one<typename data_T::value_type, typename res_T::value_type, CONFIG_T>(
                in_data[j], (i * res_T::size + j) % CONFIG_T::n_chan, thresholds, increasing);
        }
        res.write(out_data);
    }
}

} // namespace nnet

#endif
