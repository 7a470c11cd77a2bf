"""``python -m requests_pinning``: the same as the ``requests-pinning`` command."""

from .cli import main

raise SystemExit(main())
