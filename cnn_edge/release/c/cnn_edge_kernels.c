/* cnn-edge export-c: the kernels, copied into cnn_edge.c (only those the model uses, between the
 * @begin and @end lines). Integer-only: 8-bit codes, int16 centred values, int32 sums, int64 for
 * the requantization product. `cnn_q` is the model's activation type (uint8_t or int8_t).
 * The arithmetic is docs/embedding-c.md's; cnn_edge/release/int8_reference.py is its twin in NumPy. */

/* @begin requantize */
/* clamp(zero_point + round(acc * multiplier / 2^shift), low, high), rounding halves to even as
 * ONNX's QuantizeLinear does. |acc| < 2^31 and multiplier < 2^31, so |product| < 2^62; 1 <= shift <= 62.
 * The product is moved by 2^63 into unsigned arithmetic (no shift of a negative value, which C99
 * leaves to the implementation); 2^63 / 2^shift is even, so rounding to even is unchanged, and it is
 * taken off again after the shift. No branch but the clamp. */
static int32_t cnn_requantize(int32_t acc, int32_t multiplier, int32_t shift, int32_t zero_point,
                              int32_t low, int32_t high)
{
    const uint64_t moved = (uint64_t)((int64_t)acc * multiplier) + ((uint64_t)1 << 63);
    const uint64_t half = (uint64_t)1 << (shift - 1);
    const uint64_t sum = moved + half;
    uint64_t rounded = sum >> shift;
    int64_t value;
    rounded -= rounded & (uint64_t)((sum & ((half << 1) - 1u)) == 0u); /* exactly half way: to even */
    value = (int64_t)(rounded - ((uint64_t)1 << (63 - shift))) + zero_point;
    return (int32_t)(value < low ? low : (value > high ? high : value));
}
/* @end requantize */

/* @begin gather */
/* One window of one group of a channels-last input into `patch`, as (KH, KW, IC/groups), each
 * value minus the input zero point; positions in the padding are 0 (the real value 0). */
static void cnn_gather(const cnn_q *in, int16_t *patch, int32_t y0, int32_t x0, int32_t kh, int32_t kw,
                       int32_t ih, int32_t iw, int32_t ic, int32_t first, int32_t icg, int32_t zero_point)
{
    int32_t ky, kx, c;
    for (ky = 0; ky < kh; ++ky) {
        const int32_t y = y0 + ky;
        for (kx = 0; kx < kw; ++kx) {
            const int32_t x = x0 + kx;
            if (y < 0 || y >= ih || x < 0 || x >= iw) {
                for (c = 0; c < icg; ++c) {
                    *patch++ = 0;
                }
            } else {
                const cnn_q *src = in + (y * iw + x) * ic + first;
                for (c = 0; c < icg; ++c) {
                    *patch++ = (int16_t)(src[c] - zero_point);
                }
            }
        }
    }
}
/* @end gather */

/* @begin dot1 */
/* Sums of int16 x int8 products in int32, for one output channel (dot1) and for two at once (dot2:
 * the patch is read once for both). Called with a constant n, a multiple of 16 where it can be (the
 * rest in a second call), which lets the compiler vectorize at -O2. */
static int32_t cnn_dot1(const int16_t *x, const int8_t *w, int32_t n)
{
    int32_t i, acc = 0;
    for (i = 0; i < n; ++i) {
        acc += (int32_t)x[i] * w[i];
    }
    return acc;
}
/* @end dot1 */

/* @begin dot2 */
static void cnn_dot2(const int16_t *x, const int8_t *w0, const int8_t *w1, int32_t n, int32_t *acc0, int32_t *acc1)
{
    int32_t i, a0 = 0, a1 = 0;
    for (i = 0; i < n; ++i) {
        const int32_t v = x[i];
        a0 += v * w0[i];
        a1 += v * w1[i];
    }
    *acc0 += a0;
    *acc1 += a1;
}
/* @end dot2 */

/* @begin dot22 */
/* Two output pixels x two output channels: each patch value and each weight is loaded once for two
 * products (the convolutions' main loop). */
static void cnn_dot22(const int16_t *x0, const int16_t *x1, const int8_t *w0, const int8_t *w1, int32_t n, int32_t acc[4])
{
    int32_t i, a00 = 0, a01 = 0, a10 = 0, a11 = 0;
    for (i = 0; i < n; ++i) {
        const int32_t p = x0[i], q = x1[i], u = w0[i], v = w1[i];
        a00 += p * u;
        a01 += p * v;
        a10 += q * u;
        a11 += q * v;
    }
    acc[0] += a00;
    acc[1] += a01;
    acc[2] += a10;
    acc[3] += a11;
}
/* @end dot22 */

/* @begin dot1_q */
/* Sums of code x int8 products in int32 (the dense layers: their bias holds -zero_point * sum(w)). */
static int32_t cnn_dot1_q(const cnn_q *x, const int8_t *w, int32_t n)
{
    int32_t i, acc = 0;
    for (i = 0; i < n; ++i) {
        acc += (int32_t)x[i] * w[i];
    }
    return acc;
}
/* @end dot1_q */

/* @begin dot4_q */
/* Four dense outputs at once (rows `stride` apart): each input code is loaded once for four products. */
static void cnn_dot4_q(const cnn_q *x, const int8_t *w, int32_t stride, int32_t n, int32_t acc[4])
{
    int32_t i, a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const int8_t *w1 = w + stride, *w2 = w1 + stride, *w3 = w2 + stride;
    for (i = 0; i < n; ++i) {
        const int32_t v = x[i];
        a0 += v * w[i];
        a1 += v * w1[i];
        a2 += v * w2[i];
        a3 += v * w3[i];
    }
    acc[0] += a0;
    acc[1] += a1;
    acc[2] += a2;
    acc[3] += a3;
}
/* @end dot4_q */

/* @begin dot2_q */
static void cnn_dot2_q(const cnn_q *x, const int8_t *w0, const int8_t *w1, int32_t n, int32_t *acc0, int32_t *acc1)
{
    int32_t i, a0 = 0, a1 = 0;
    for (i = 0; i < n; ++i) {
        const int32_t v = x[i];
        a0 += v * w0[i];
        a1 += v * w1[i];
    }
    *acc0 += a0;
    *acc1 += a1;
}
/* @end dot2_q */

/* @begin maxpool */
/* Max pooling on the codes (the same scale and zero point in and out); padding never wins. */
static void cnn_maxpool(const cnn_q *in, cnn_q *out, int32_t ih, int32_t iw, int32_t c, int32_t oh, int32_t ow,
                        int32_t kh, int32_t kw, int32_t sy, int32_t sx, int32_t pt, int32_t pl)
{
    int32_t oy, ox, ky, kx, ch;
    for (oy = 0; oy < oh; ++oy) {
        for (ox = 0; ox < ow; ++ox) {
            cnn_q *dst = out + (oy * ow + ox) * c;
            for (ch = 0; ch < c; ++ch) {
                int32_t best = -32768;
                for (ky = 0; ky < kh; ++ky) {
                    const int32_t y = oy * sy - pt + ky;
                    if (y < 0 || y >= ih) {
                        continue;
                    }
                    for (kx = 0; kx < kw; ++kx) {
                        const int32_t x = ox * sx - pl + kx;
                        if (x >= 0 && x < iw && in[(y * iw + x) * c + ch] > best) {
                            best = in[(y * iw + x) * c + ch];
                        }
                    }
                }
                dst[ch] = (cnn_q)best;
            }
        }
    }
}
/* @end maxpool */

/* @begin avgpool */
/* Average pooling: the sum of (code - zero point) over the window, requantized by
 * input scale / (output scale * count). One multiplier and shift for windows of kh * kw, or
 * (per_count) one per count, indexed by count - 1, where windows count only positions inside the image. */
static void cnn_avgpool(const cnn_q *in, cnn_q *out, int32_t ih, int32_t iw, int32_t c, int32_t oh, int32_t ow,
                        int32_t kh, int32_t kw, int32_t sy, int32_t sx, int32_t pt, int32_t pl, int32_t per_count,
                        const int32_t *multiplier, const uint8_t *shift, int32_t zin, int32_t zout, int32_t low, int32_t high)
{
    int32_t oy, ox, ky, kx, ch;
    for (oy = 0; oy < oh; ++oy) {
        for (ox = 0; ox < ow; ++ox) {
            cnn_q *dst = out + (oy * ow + ox) * c;
            for (ch = 0; ch < c; ++ch) {
                int32_t acc = 0, count = 0;
                for (ky = 0; ky < kh; ++ky) {
                    const int32_t y = oy * sy - pt + ky;
                    for (kx = 0; kx < kw; ++kx) {
                        const int32_t x = ox * sx - pl + kx;
                        if (y >= 0 && y < ih && x >= 0 && x < iw) {
                            acc += in[(y * iw + x) * c + ch] - zin;
                            ++count;
                        }
                    }
                }
                count = per_count ? count - 1 : 0;
                dst[ch] = (cnn_q)cnn_requantize(acc, multiplier[count], shift[count], zout, low, high);
            }
        }
    }
}
/* @end avgpool */

/* @begin lut_pixels */
/* The raw pixels 0..255 through the table of the graph's first element-wise ops (the normalization
 * and its QuantizeLinear nodes), as the ONNX specification computes them. */
static void cnn_lut_pixels(const uint8_t *in, cnn_q *out, int32_t n, const cnn_q *table)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        out[i] = table[in[i]];
    }
}
/* @end lut_pixels */

/* @begin lut */
/* Codes through a table (element-wise ops between a DequantizeLinear and a QuantizeLinear); one
 * table of 256 for the tensor, or one per channel (rows = channels, channels last). In place is fine. */
static void cnn_lut(const cnn_q *in, cnn_q *out, int32_t n, const cnn_q *table, int32_t rows, int32_t offset)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        out[i] = table[(rows == 1 ? 0 : (i % rows) * 256) + in[i] + offset];
    }
}
/* @end lut */
