"""Streaming (non-temporal) stores for the Numba kernels that write large arrays.

A store that misses the cache first reads the line it writes (read for ownership); a
non-temporal store writes around the cache and skips that read, so a kernel that reads
n and writes n elements moves 2n instead of 3n.  Worth it only when the written array
could not stay in cache for its reader anyway (STREAM_MIN_BYTES, half the L3 here):
below that the streamed data has to come back from memory.  Same scheme and threshold
as the Cython activations (see activations.pyx there).

``stream(dst, lo, src)`` copies ``src`` (a small buffer in L1 whose byte size is a
multiple of 32) to ``dst[lo:lo + len(src)]``, which must be 32-byte aligned, with aligned
vector stores marked ``!nontemporal`` (vmovntps/vmovntpd); ``sfence()`` orders them
before what follows (they are weakly ordered): once per chunk, before the parallel
loop's closing barrier.  x86-64 only (``STREAMS``); elsewhere the kernels keep their
ordinary loops.
"""
import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

STREAMS = platform.machine().lower() in ("x86_64", "amd64")
STREAM_MIN_BYTES = 1 << 24
ALIGN = 32  # bytes: one AVX vector


@intrinsic
def stream(typingctx, dst, lo, src):
    # dst in C order only: the stores go to dst's address plus the index (a strided dst
    # is a typing error, not stores between its elements)
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array)
            and dst.dtype == src.dtype and isinstance(dst.dtype, types.Float)
            and dst.layout == "C" and isinstance(lo, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        d = context.make_array(sig.args[0])(context, builder, args[0])
        s = context.make_array(sig.args[2])(context, builder, args[2])
        itemsize = sig.args[0].dtype.bitwidth // 8
        vec = ir.VectorType(context.get_value_type(sig.args[0].dtype), ALIGN // itemsize)
        intp = context.get_value_type(types.intp)
        base = builder.gep(d.data, [context.cast(builder, args[1], sig.args[1], types.intp)])
        nontemporal = builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)])
        step = intp(ALIGN // itemsize)
        with cgutils.for_range_slice(builder, intp(0), s.nitems, step, intp) as (j, _):
            v = builder.load(builder.bitcast(builder.gep(s.data, [j]), vec.as_pointer()),
                             align=itemsize)
            st = builder.store(v, builder.bitcast(builder.gep(base, [j]), vec.as_pointer()),
                               align=ALIGN)
            st.set_metadata("nontemporal", nontemporal)
        return context.get_dummy_value()
    return types.none(dst, lo, src), codegen


@intrinsic
def sfence(typingctx):
    def codegen(context, builder, sig, args):
        fn = builder.module.declare_intrinsic("llvm.x86.sse.sfence", (),
                                              ir.FunctionType(ir.VoidType(), []))
        builder.call(fn, [])
        return context.get_dummy_value()
    return types.none(), codegen
