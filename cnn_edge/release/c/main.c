/* cnn-edge export-c: a small program around cnn_edge_predict. It uses the C library's stdio and
 * time.h; the classifier itself (cnn_edge.c) uses neither.
 *
 *   cnn_edge_main DIGIT.pgm        prints the digit of a 28x28 binary PGM (P5), MNIST style (light
 *                                  digit on a dark background), and its probability
 *   cnn_edge_main --batch IN OUT   IN: images of 784 bytes one after another ("-": standard input);
 *                                  OUT: the 10 quantized logits of each, one byte each ("-": standard
 *                                  output); then "images N seconds S" on standard error, S being the
 *                                  processor time (clock()) spent in cnn_edge_predict alone.
 *
 * Exit codes: 0 done, 1 a file could not be opened, read or written, 2 bad usage or input.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cnn_edge.h"

#define CHUNK 256 /* images read, classified and written at a time */

static uint8_t images[CHUNK][CNN_EDGE_PIXELS];
static cnn_edge_logit_t logits[CHUNK][CNN_EDGE_CLASSES];

/* The next header field of a PGM: skips white space and # comments. -1 when there is none. */
static long pgm_number(FILE *f)
{
    long value = -1;
    int c = fgetc(f);
    for (;;) {
        while (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            c = fgetc(f);
        }
        if (c != '#') {
            break;
        }
        while (c != '\n' && c != EOF) {
            c = fgetc(f);
        }
    }
    while (c >= '0' && c <= '9') {
        value = (value < 0 ? 0 : value * 10) + (c - '0');
        if (value > 65535) {
            return -1;
        }
        c = fgetc(f);
    }
    /* one white-space character ends the field (after maxval, the pixels follow it) */
    return (c == ' ' || c == '\t' || c == '\r' || c == '\n') ? value : -1;
}

static int read_pgm(const char *path, uint8_t image[CNN_EDGE_PIXELS])
{
    FILE *f = fopen(path, "rb");
    long width, height, maxval;
    if (f == NULL) {
        fprintf(stderr, "error: cannot open %s\n", path);
        return 1;
    }
    if (fgetc(f) != 'P' || fgetc(f) != '5') {
        fprintf(stderr, "error: %s is not a binary PGM (P5)\n", path);
        fclose(f);
        return 2;
    }
    width = pgm_number(f);
    height = pgm_number(f);
    maxval = pgm_number(f);
    if (width != CNN_EDGE_IMAGE_SIZE || height != CNN_EDGE_IMAGE_SIZE || maxval < 1 || maxval > 255) {
        fprintf(stderr, "error: %s must be a %dx%d PGM with at most 255 grey levels\n", path,
                CNN_EDGE_IMAGE_SIZE, CNN_EDGE_IMAGE_SIZE);
        fclose(f);
        return 2;
    }
    if (fread(image, 1, CNN_EDGE_PIXELS, f) != CNN_EDGE_PIXELS) {
        fprintf(stderr, "error: %s ends before its %d pixels\n", path, CNN_EDGE_PIXELS);
        fclose(f);
        return 2;
    }
    fclose(f);
    if (maxval != 255) { /* stretch to 0..255, as the model expects */
        int i;
        for (i = 0; i < CNN_EDGE_PIXELS; ++i) {
            long v = image[i] > maxval ? maxval : image[i];
            image[i] = (uint8_t)((v * 255 + maxval / 2) / maxval);
        }
    }
    return 0;
}

static int classify_file(const char *path)
{
    float probabilities[CNN_EDGE_CLASSES];
    int digit, rc = read_pgm(path, images[0]);
    if (rc != 0) {
        return rc;
    }
    digit = cnn_edge_predict(images[0], logits[0]);
    cnn_edge_softmax(logits[0], probabilities);
    printf("%d %.4f\n", digit, (double)probabilities[digit]);
    return 0;
}

static int run_batch(const char *in_path, const char *out_path)
{
    FILE *in = strcmp(in_path, "-") == 0 ? stdin : fopen(in_path, "rb");
    FILE *out;
    long count = 0;
    double seconds = 0.0;
    int rc = 0;
    if (in == NULL) {
        fprintf(stderr, "error: cannot open %s\n", in_path);
        return 1;
    }
    out = strcmp(out_path, "-") == 0 ? stdout : fopen(out_path, "wb");
    if (out == NULL) {
        fprintf(stderr, "error: cannot create %s\n", out_path);
        if (in != stdin) {
            fclose(in);
        }
        return 1;
    }
    for (;;) {
        const size_t got = fread(images, 1, sizeof images, in);
        const size_t n = got / CNN_EDGE_PIXELS;
        size_t i;
        clock_t start;
        if (got % CNN_EDGE_PIXELS != 0) {
            fprintf(stderr, "error: %s ends inside an image (images are %d bytes)\n", in_path, CNN_EDGE_PIXELS);
            rc = 2;
            break;
        }
        start = clock();
        for (i = 0; i < n; ++i) {
            cnn_edge_predict(images[i], logits[i]);
        }
        seconds += (double)(clock() - start) / CLOCKS_PER_SEC;
        if (fwrite(logits, CNN_EDGE_CLASSES * sizeof(cnn_edge_logit_t), n, out) != n) {
            fprintf(stderr, "error: cannot write %s\n", out_path);
            rc = 1;
            break;
        }
        count += (long)n;
        if (got < sizeof images) {
            if (ferror(in)) {
                fprintf(stderr, "error: cannot read %s\n", in_path);
                rc = 1;
            }
            break;
        }
    }
    if (in != stdin) {
        fclose(in);
    }
    if (out != stdout ? fclose(out) != 0 : fflush(out) != 0) {
        fprintf(stderr, "error: cannot write %s\n", out_path);
        rc = rc ? rc : 1;
    }
    if (rc == 0) {
        fprintf(stderr, "images %ld seconds %.6f\n", count, seconds);
    }
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 2 && argv[1][0] != '-') {
        return classify_file(argv[1]);
    }
    if (argc == 4 && strcmp(argv[1], "--batch") == 0) {
        return run_batch(argv[2], argv[3]);
    }
    fprintf(stderr, "usage: %s DIGIT.pgm | --batch IMAGES LOGITS\n", argc > 0 ? argv[0] : "cnn_edge_main");
    return 2;
}
