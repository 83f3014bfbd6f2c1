/* cnn-edge export-c: the optional softmax over the quantized logits (float; needs expf). Kept out
 * of cnn_edge.c so that the classifier itself needs no maths library. */
#include <math.h>

#include "cnn_edge.h"

void cnn_edge_softmax(const cnn_edge_logit_t logits[CNN_EDGE_CLASSES], float probabilities[CNN_EDGE_CLASSES])
{
    float largest = (float)logits[0], total = 0.0f;
    int i;
    for (i = 1; i < CNN_EDGE_CLASSES; ++i) {
        if ((float)logits[i] > largest) {
            largest = (float)logits[i];
        }
    }
    for (i = 0; i < CNN_EDGE_CLASSES; ++i) {
        /* the largest logit maps to exp(0): no overflow */
        probabilities[i] = expf(((float)logits[i] - largest) * CNN_EDGE_LOGIT_SCALE);
        total += probabilities[i];
    }
    for (i = 0; i < CNN_EDGE_CLASSES; ++i) {
        probabilities[i] /= total;
    }
}
