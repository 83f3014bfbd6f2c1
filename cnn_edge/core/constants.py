"""Named constants shared by training, export and the runtime. Torch-free on purpose."""
from __future__ import annotations

IMAGE_SIZE = 28  # MNIST images are 28x28, one grey channel
CHANNELS = 1
NUM_CLASSES = 10
CLASS_LABELS = tuple(str(d) for d in range(NUM_CLASSES))  # class i is the digit i

# Pixel intensities are fed as they are stored in MNIST: 0 (background) .. 255 (ink).
PIXEL_MAX = 255.0
# Mean and standard deviation of MNIST training pixels on the 0..1 scale. They are baked
# into the graph (see model.Normalize), so consumers in other languages never copy them.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

# The spec CNN's architecture name: the default everywhere, and the one released as mnist_cnn.*
SPEC_ARCH = "spec"

# The pixel limit of an input image (--max-pixels): 40 Mpixels, so a 7,000 x 5,700 photo still
# passes and a decompression bomb does not.
DEFAULT_MAX_PIXELS = 40_000_000
# The size limit of an input image file (--max-file-bytes), checked before any byte is read, so
# a reader that takes a file whole (Ray's, Node.js's) holds at most this much: 64 MiB is 6 bytes
# per pixel of a 10-Mpixel photo (JPEG and PNG files of 40 Mpixels are well below it); a larger,
# uncompressed BMP or TIFF needs the limit raised.
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024

# Size of the validation split the default recipe takes out of the 60,000 training images.
DEFAULT_VAL_SIZE = 5_000

# The size limit of an input file, checked before it is read: 64 MiB, far above any scan of a digit.
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
