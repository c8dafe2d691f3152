"""``python -m cvxattn_lib.cifar extract | train | report`` (see :mod:`.cli`)."""

from .cli import main

raise SystemExit(main())
