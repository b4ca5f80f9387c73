"""The public kernels: ``import fastdl.functional as F``.

Each function validates its arguments, allocates its results (or takes ``out=``)
and dispatches through the registry (``fastdl/_registry.py``) to the backend
chosen by ``backend=`` or the default one.  One module per kernel family.
"""
from fastdl.functional.dense import *  # noqa: F401,F403
from fastdl.functional.activations import *  # noqa: F401,F403
from fastdl.functional.softmax import *  # noqa: F401,F403
from fastdl.functional.maxout import *  # noqa: F401,F403
from fastdl.functional.dropout import *  # noqa: F401,F403
from fastdl.functional.losses import *  # noqa: F401,F403
from fastdl.functional.optim import *  # noqa: F401,F403
from fastdl.functional.conv import *  # noqa: F401,F403
from fastdl.functional.pool import *  # noqa: F401,F403
