from .core import *  # noqa: F401,F403  (interim: split by job next)
from .core import _Strict, _display, _read_yaml, _describe, _load_with_extends  # noqa: F401
