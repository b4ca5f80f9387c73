# cython: language_level=3
# distutils: define_macros = FASTDL_LIBMVEC=1 NPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION
# distutils: libraries = m
"""Elementwise activations, Cython backend.

Every kernel takes flat (n,) C-contiguous arrays of one float dtype (the public
wrapper ravels): the forward kernels ``name(x, out[, alpha])`` write
out[i] = f(x[i]), the backward kernels ``name_backward(dy, x, dx[, alpha])`` write
dx[i] = dy[i] * f'(x[i]).  ``out`` may be ``x`` and ``dx`` may be ``dy`` or ``x``
(each element is read before it is written; gcc's alias check lets an exact
alias take the vector path).  The formulas are the scalar helpers of
``_helpers.pxd``, shared with dense's fused pass.

One pass over memory per call.  The branch on the activation code is taken once
per span, outside its loop, so every loop is a plain map that gcc vectorises:
in float32 the exp, expm1, tanh and GELU of the helpers are inline C (the Numba
backend's algorithms), in float64 libmvec vector calls (FASTDL_LIBMVEC above, see
_helpers.pxd).  Above PARALLEL_THRESHOLD elements the array is cut into
CHUNK-element spans handed out by a static prange (each thread one contiguous
block); below, one span on the calling thread.

Streaming stores: when the written array is at least STREAM_MIN_BYTES (half the
L3 here, so it could not stay cached for its reader anyway), each span computes
NT_BLOCK elements at a time into a small buffer in L1 and writes them with
non-temporal stores (x86 SSE2/AVX), which skip the read-for-ownership of the
destination: relu forward + backward on 10M float32 went from 10.4-11.4 ms to
7.6-8.2 ms in a C model of this loop (same process, interleaved); on 1M elements
(4 MB, in cache) they were 40% slower, hence the size threshold.  The streamed
stores need a destination aligned to its item size (then NT_ALIGN is reached after a
few elements); a misaligned one (a view of a byte buffer at an odd offset) takes the
plain loop, whoever calls.
"""
from cython cimport floating
from cython.parallel cimport prange

from fastdl._kernels.cython._helpers cimport (
    PARALLEL_THRESHOLD, ACT_RELU, ACT_LEAKY_RELU, ACT_ELU, ACT_SIGMOID, ACT_TANH,
    ACT_GELU, ACT_SILU, ftanh, relu_s, leaky_relu_s, elu_s, sigmoid_s, gelu_s, silu_s,
    relu_d, leaky_relu_d, elu_d, sigmoid_d, tanh_d, gelu_d, silu_d)

# elements per parallel span: large enough that a span's call costs nothing,
# small enough that the last threads are not left with a long tail
cdef enum:
    CHUNK = 32768

# Non-temporal stores of a block (a multiple of 32 bytes, to a destination aligned to
# FASTDL_NT_ALIGN bytes), then a store fence once per span: the stores are weakly
# ordered, and the fence makes them visible before the threads' closing barrier.
cdef extern from *:
    """
    #if defined(__AVX__)
    #include <immintrin.h>
    #define FASTDL_NT_ALIGN 32
    static inline void fastdl_stream(void *dst, const void *src, size_t nbytes) {
        for (size_t j = 0; j < nbytes; j += 32)
            _mm256_stream_si256((__m256i *)((char *)dst + j),
                                _mm256_loadu_si256((const __m256i *)((const char *)src + j)));
    }
    static inline void fastdl_sfence(void) { _mm_sfence(); }
    #elif defined(__SSE2__)
    #include <emmintrin.h>
    #define FASTDL_NT_ALIGN 16
    static inline void fastdl_stream(void *dst, const void *src, size_t nbytes) {
        for (size_t j = 0; j < nbytes; j += 16)
            _mm_stream_si128((__m128i *)((char *)dst + j),
                             _mm_loadu_si128((const __m128i *)((const char *)src + j)));
    }
    static inline void fastdl_sfence(void) { _mm_sfence(); }
    #else
    #include <string.h>
    #define FASTDL_NT_ALIGN 0  /* no streaming stores: the plain path is taken */
    static inline void fastdl_stream(void *dst, const void *src, size_t nbytes) {
        memcpy(dst, src, nbytes);
    }
    static inline void fastdl_sfence(void) {}
    #endif
    """
    const size_t NT_ALIGN "FASTDL_NT_ALIGN"
    void nt_stream "fastdl_stream"(void *dst, const void *src, size_t nbytes) noexcept nogil
    void nt_fence "fastdl_sfence"() noexcept nogil

cdef enum:
    NT_BLOCK = 64  # elements per streamed block (64 and 256 B-1 KB blocks measured alike or slower)
    STREAM_MIN_BYTES = 1 << 24


cdef inline bint item_aligned(const void *p, Py_ssize_t itemsize) noexcept nogil:
    # NumPy arrays may start at any byte (np.frombuffer(buf, offset=1)); from such a
    # pointer no element is NT_ALIGN-aligned, and a streaming store there faults
    return (<size_t>p) % <size_t>itemsize == 0


cdef inline Py_ssize_t nt_head(const void *p, Py_ssize_t n, Py_ssize_t itemsize) noexcept nogil:
    # elements before p + head is NT_ALIGN-aligned (p is aligned to its item size)
    cdef Py_ssize_t head = ((NT_ALIGN - (<size_t>p) % NT_ALIGN) % NT_ALIGN) // itemsize
    return head if head < n else n


cdef void forward_span(const floating *x, floating *y, Py_ssize_t n, int act,
                       floating alpha) noexcept nogil:
    # x, y (n,): y = f(x)
    cdef Py_ssize_t i
    if act == ACT_RELU:
        for i in range(n):
            y[i] = relu_s(x[i])
    elif act == ACT_LEAKY_RELU:
        for i in range(n):
            y[i] = leaky_relu_s(x[i], alpha)
    elif act == ACT_ELU:
        for i in range(n):
            y[i] = elu_s(x[i], alpha)
    elif act == ACT_SIGMOID:
        for i in range(n):
            y[i] = sigmoid_s(x[i])
    elif act == ACT_TANH:
        for i in range(n):
            y[i] = ftanh(x[i])
    elif act == ACT_GELU:
        for i in range(n):
            y[i] = gelu_s(x[i])
    elif act == ACT_SILU:
        for i in range(n):
            y[i] = silu_s(x[i])


cdef void backward_span(const floating *dy, const floating *x, floating *dx, Py_ssize_t n,
                        int act, floating alpha) noexcept nogil:
    # dy, x, dx (n,): dx = dy * f'(x)
    cdef Py_ssize_t i
    if act == ACT_RELU:
        for i in range(n):
            dx[i] = dy[i] * relu_d(x[i])
    elif act == ACT_LEAKY_RELU:
        for i in range(n):
            dx[i] = dy[i] * leaky_relu_d(x[i], alpha)
    elif act == ACT_ELU:
        for i in range(n):
            dx[i] = dy[i] * elu_d(x[i], alpha)
    elif act == ACT_SIGMOID:
        for i in range(n):
            dx[i] = dy[i] * sigmoid_d(x[i])
    elif act == ACT_TANH:
        for i in range(n):
            dx[i] = dy[i] * tanh_d(x[i])
    elif act == ACT_GELU:
        for i in range(n):
            dx[i] = dy[i] * gelu_d(x[i])
    elif act == ACT_SILU:
        for i in range(n):
            dx[i] = dy[i] * silu_d(x[i])


cdef void forward_span_nt(const floating *x, floating *y, Py_ssize_t n, int act,
                          floating alpha) noexcept nogil:
    # forward_span with streaming stores: NT_BLOCK elements into buf (L1), then out.
    # Each block is read before it is written, so y may be x.  A y not aligned to its
    # item size takes the plain loop (the public layer never passes one; callers that
    # go straight to the kernel may).
    cdef floating buf[NT_BLOCK]
    cdef Py_ssize_t i
    if not item_aligned(y, sizeof(floating)):
        forward_span(x, y, n, act, alpha)
        return
    i = nt_head(y, n, sizeof(floating))
    forward_span(x, y, i, act, alpha)
    while i + NT_BLOCK <= n:
        forward_span(x + i, buf, NT_BLOCK, act, alpha)
        nt_stream(y + i, buf, NT_BLOCK * sizeof(floating))
        i += NT_BLOCK
    forward_span(x + i, y + i, n - i, act, alpha)
    nt_fence()


cdef void backward_span_nt(const floating *dy, const floating *x, floating *dx, Py_ssize_t n,
                           int act, floating alpha) noexcept nogil:
    # backward_span with streaming stores, as forward_span_nt (a misaligned dx included)
    cdef floating buf[NT_BLOCK]
    cdef Py_ssize_t i
    if not item_aligned(dx, sizeof(floating)):
        backward_span(dy, x, dx, n, act, alpha)
        return
    i = nt_head(dx, n, sizeof(floating))
    backward_span(dy, x, dx, i, act, alpha)
    while i + NT_BLOCK <= n:
        backward_span(dy + i, x + i, buf, NT_BLOCK, act, alpha)
        nt_stream(dx + i, buf, NT_BLOCK * sizeof(floating))
        i += NT_BLOCK
    backward_span(dy + i, x + i, dx + i, n - i, act, alpha)
    nt_fence()


cdef inline bint streams(Py_ssize_t n, Py_ssize_t itemsize) noexcept nogil:
    return NT_ALIGN != 0 and n * itemsize >= STREAM_MIN_BYTES


cdef void forward(const floating[::1] x, floating[::1] out, int act,
                  double alpha) noexcept nogil:
    cdef Py_ssize_t n = x.shape[0], c, lo
    cdef floating a = <floating>alpha
    if n == 0:
        return
    if n < PARALLEL_THRESHOLD:
        forward_span(&x[0], &out[0], n, act, a)
    elif streams(n, sizeof(floating)):
        for c in prange((n + CHUNK - 1) // CHUNK, schedule="static"):
            lo = c * CHUNK
            forward_span_nt(&x[lo], &out[lo], min(<Py_ssize_t>CHUNK, n - lo), act, a)
    else:
        for c in prange((n + CHUNK - 1) // CHUNK, schedule="static"):
            lo = c * CHUNK
            forward_span(&x[lo], &out[lo], min(<Py_ssize_t>CHUNK, n - lo), act, a)


cdef void backward(const floating[::1] dy, const floating[::1] x, floating[::1] dx, int act,
                   double alpha) noexcept nogil:
    cdef Py_ssize_t n = x.shape[0], c, lo
    cdef floating a = <floating>alpha
    if n == 0:
        return
    if n < PARALLEL_THRESHOLD:
        backward_span(&dy[0], &x[0], &dx[0], n, act, a)
    elif streams(n, sizeof(floating)):
        for c in prange((n + CHUNK - 1) // CHUNK, schedule="static"):
            lo = c * CHUNK
            backward_span_nt(&dy[lo], &x[lo], &dx[lo], min(<Py_ssize_t>CHUNK, n - lo), act, a)
    else:
        for c in prange((n + CHUNK - 1) // CHUNK, schedule="static"):
            lo = c * CHUNK
            backward_span(&dy[lo], &x[lo], &dx[lo], min(<Py_ssize_t>CHUNK, n - lo), act, a)


def relu(const floating[::1] x, floating[::1] out):
    """out = max(x, 0)   x, out (n,)"""
    forward(x, out, ACT_RELU, 0)


def relu_backward(const floating[::1] dy, const floating[::1] x, floating[::1] dx):
    """dx = dy * (x > 0)   dy, x, dx (n,)"""
    backward(dy, x, dx, ACT_RELU, 0)


def leaky_relu(const floating[::1] x, floating[::1] out, double alpha):
    """out = x if x >= 0 else alpha * x   x, out (n,)"""
    forward(x, out, ACT_LEAKY_RELU, alpha)


def leaky_relu_backward(const floating[::1] dy, const floating[::1] x, floating[::1] dx,
                        double alpha):
    """dx = dy * (1 if x > 0 else alpha)   dy, x, dx (n,)"""
    backward(dy, x, dx, ACT_LEAKY_RELU, alpha)


def elu(const floating[::1] x, floating[::1] out, double alpha):
    """out = x if x >= 0 else alpha * (e^x - 1)   x, out (n,)"""
    forward(x, out, ACT_ELU, alpha)


def elu_backward(const floating[::1] dy, const floating[::1] x, floating[::1] dx,
                 double alpha):
    """dx = dy * (1 if x > 0 else alpha e^x)   dy, x, dx (n,)"""
    backward(dy, x, dx, ACT_ELU, alpha)


def sigmoid(const floating[::1] x, floating[::1] out):
    """out = 1 / (1 + e^-x)   x, out (n,)"""
    forward(x, out, ACT_SIGMOID, 0)


def sigmoid_backward(const floating[::1] dy, const floating[::1] x, floating[::1] dx):
    """dx = dy * s(x) (1 - s(x))   dy, x, dx (n,)"""
    backward(dy, x, dx, ACT_SIGMOID, 0)


def tanh(const floating[::1] x, floating[::1] out):
    """out = tanh(x)   x, out (n,)"""
    forward(x, out, ACT_TANH, 0)


def tanh_backward(const floating[::1] dy, const floating[::1] x, floating[::1] dx):
    """dx = dy * (1 - tanh(x)^2)   dy, x, dx (n,)"""
    backward(dy, x, dx, ACT_TANH, 0)


def gelu(const floating[::1] x, floating[::1] out):
    """out = x Phi(x)   x, out (n,)"""
    forward(x, out, ACT_GELU, 0)


def gelu_backward(const floating[::1] dy, const floating[::1] x, floating[::1] dx):
    """dx = dy * (Phi(x) + x phi(x))   dy, x, dx (n,)"""
    backward(dy, x, dx, ACT_GELU, 0)


def silu(const floating[::1] x, floating[::1] out):
    """out = x sigmoid(x)   x, out (n,)"""
    forward(x, out, ACT_SILU, 0)


def silu_backward(const floating[::1] dy, const floating[::1] x, floating[::1] dx):
    """dx = dy * s(x) (1 + x (1 - s(x)))   dy, x, dx (n,)"""
    backward(dy, x, dx, ACT_SILU, 0)
