# cython: language_level=3
"""fastdl's thread count, in force only while one of its kernels runs.

Every kernel the registry hands out is wrapped in ``Scoped``.  For the duration of
the call it sets, and afterwards restores:
  * OpenMP's thread count of the calling thread (``omp_set_num_threads``), which the
    Cython kernels' ``prange`` regions use.  That setting belongs to the thread, and
    to whoever else uses the same libgomp.so.1 in it: PyTorch's wheel ships one of
    that soname, and whichever loads first serves both, so a count left set there
    would be PyTorch's ``torch.get_num_threads()`` too;
  * the thread count of every OpenBLAS loaded (``register_blas``): NumPy's (the
    NumPy backend's GEMMs, and the compiled backends' where fastdl/_blas.py chose
    it) and SciPy's (theirs otherwise, through ``scipy.linalg.cython_blas``).
    That count is process-wide, so it is set when the first scoped call of any
    thread enters and restored when the last leaves; the bookkeeping runs under the
    GIL, which makes it atomic.
Nothing is set when the count is already fastdl's (the common case: both are the
CPU count), so a call then costs a comparison per library.

The count itself (``set_count``) is decided in fastdl/_threads.py, which this
module calls back (``set_hook``) at most once per period, from the next call.
"""
cimport openmp
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

ctypedef int (*blas_get_t)() noexcept nogil
ctypedef void (*blas_set_t)(int) noexcept nogil

cdef enum:
    MAX_BLAS = 16

cdef blas_get_t _blas_get[MAX_BLAS]
cdef blas_set_t _blas_set[MAX_BLAS]
cdef int _blas_saved[MAX_BLAS]
cdef int _nblas = 0
cdef int _blas_depth = 0   # scoped calls under way, in every thread
cdef int _blas_applied = 0  # the count the outermost of them set
cdef int _count = 1
cdef double _due = 0.0
cdef object _hook = None
cdef double _blas_until = 0.0  # OpenBLAS's idle threads spin until then
cdef double _blas_spin = 0.0   # for so long after a multi-threaded BLAS call


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + 1e-9 * ts.tv_nsec


def set_num_threads(int n):
    """OpenMP's thread count of the calling thread (``omp_set_num_threads``)."""
    openmp.omp_set_num_threads(n)


def get_num_threads():
    """OpenMP's thread count of the calling thread (``omp_get_max_threads``)."""
    return openmp.omp_get_max_threads()


def omp_state():
    """The calling thread's OpenMP settings that a library may change behind us:
    (thread count, max active levels, dynamic)."""
    return (openmp.omp_get_max_threads(), openmp.omp_get_max_active_levels(),
            openmp.omp_get_dynamic())


def restore_omp_state(state):
    """Put back what ``omp_state`` returned (Numba's omp layer, when it starts its
    pool, sets the thread count and enables nested regions in the calling thread)."""
    n, levels, dynamic = state
    if openmp.omp_get_max_threads() != n:
        openmp.omp_set_num_threads(n)
    if openmp.omp_get_max_active_levels() != levels:
        openmp.omp_set_max_active_levels(levels)
    if openmp.omp_get_dynamic() != dynamic:
        openmp.omp_set_dynamic(dynamic)


def set_count(int n):
    """The thread count of every scoped call from now on (n >= 1)."""
    global _count
    _count = n if n > 1 else 1


def get_count():
    return _count


def set_hook(hook, double due):
    """``hook()`` is called by the first scoped call at or after monotonic time ``due``
    (``time.monotonic()``'s clock); it sets the next ``due`` itself.  None: no hook."""
    global _hook, _due
    _hook = hook
    _due = due


def set_blas_spin(double seconds):
    """How long OpenBLAS's idle threads spin after a call (see ``Scoped``)."""
    global _blas_spin
    _blas_spin = seconds


def set_due(double due):
    global _due
    _due = due


def register_blas(size_t get_addr, size_t set_addr):
    """Add a BLAS whose thread count scoped calls set: the addresses of its
    ``int get_num_threads(void)`` and ``void set_num_threads(int)``.  Returns False
    when the table is full."""
    global _nblas
    cdef int i
    for i in range(_nblas):
        if <size_t>_blas_get[i] == get_addr:
            return True
    if _nblas == MAX_BLAS:
        return False
    _blas_get[_nblas] = <blas_get_t>get_addr
    _blas_set[_nblas] = <blas_set_t>set_addr
    if _blas_depth:  # registered inside a scoped call: it leaves with the others
        _blas_saved[_nblas] = _blas_get[_nblas]()
        if _blas_saved[_nblas] != _blas_applied:
            _blas_set[_nblas](_blas_applied)
    _nblas += 1
    return True


def blas_count():
    """How many BLAS libraries scoped calls set."""
    return _nblas


cdef inline void _blas_enter(int want) noexcept:
    global _blas_depth, _blas_applied
    cdef int i
    if _blas_depth == 0:
        _blas_applied = want
        for i in range(_nblas):
            _blas_saved[i] = _blas_get[i]()
            if _blas_saved[i] != want:
                _blas_set[i](want)
    _blas_depth += 1


cdef inline void _blas_leave() noexcept:
    global _blas_depth
    cdef int i
    _blas_depth -= 1
    if _blas_depth == 0:
        for i in range(_nblas):
            if _blas_saved[i] != _blas_applied:
                _blas_set[i](_blas_saved[i])


def reset_after_fork():
    """In a child forked while another thread was inside a scoped call: that call never
    returns here, so put back each BLAS's count from before it and forget the calls
    under way (else the child's calls never restored it: BLAS stayed at fastdl's count
    for good, measured)."""
    global _blas_depth
    cdef int i
    if _blas_depth:
        for i in range(_nblas):
            if _blas_saved[i] != _blas_applied:
                _blas_set[i](_blas_saved[i])
        _blas_depth = 0


cdef class Scoped:
    """``fn`` called with fastdl's thread count in force for OpenMP and BLAS, the
    caller's settings restored afterwards (see the module docstring).

    ``blas``: ``fn`` calls BLAS.  After a multi-threaded BLAS call, OpenBLAS's idle
    threads spin for ``set_blas_spin`` seconds, each on a CPU of its own; a parallel
    region started then shares a CPU with one of them and waits for the scheduler.
    So until then every other scoped call runs on one thread (OpenMP's count 1: the
    Cython kernels' prange regions run serially, and ``numba_parallel_here`` says no).

    ``serial_blas``: ``fn`` parallelises itself (a prange region whose threads each
    call BLAS on a product of their own, as the Cython convolution) and wants BLAS on
    one thread: OpenMP gets the count, BLAS 1 (a GEMM too small to pay for a second
    thread ran slower on two, and an OpenBLAS thread pool inside each OpenMP thread
    would oversubscribe the CPUs).  Such a call runs a parallel region, so it too runs
    on one thread while OpenBLAS's threads spin, and it leaves none spinning.  BLAS's
    count is process-wide: while another Python thread's scoped call is under way, it
    stays that call's (still correct, OpenBLAS serialises its pool)."""
    cdef readonly object fn
    cdef readonly bint blas
    cdef readonly bint serial_blas

    def __init__(self, fn, bint blas=False, bint serial_blas=False):
        self.fn = fn
        self.blas = blas and not serial_blas
        self.serial_blas = serial_blas

    def __call__(self, *args, **kwargs):
        global _blas_until
        cdef int want, prev
        cdef double now = _now()
        if _hook is not None and now >= _due:
            _hook()
        want = _count
        if not self.blas and now < _blas_until:
            want = 1
        prev = openmp.omp_get_max_threads()
        if prev != want:
            openmp.omp_set_num_threads(want)
        _blas_enter(1 if self.serial_blas else want)
        try:
            return self.fn(*args, **kwargs)
        finally:
            _blas_leave()
            if prev != want:
                openmp.omp_set_num_threads(prev)
            if self.blas and want > 1 and _nblas:
                _blas_until = _now() + _blas_spin

    def __repr__(self):
        return f"Scoped({self.fn!r}, blas={self.blas}, serial_blas={self.serial_blas})"

    @property
    def __wrapped__(self):
        return self.fn
