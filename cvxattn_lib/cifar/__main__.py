"""``python -m cvxattn_lib.cifar extract | train | report`` (see :mod:`.cli`); also installed as
the console script ``cvxattn-cifar``."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
