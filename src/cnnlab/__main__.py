"""``python -m cnnlab`` (also ``torchrun -m cnnlab train ...``)."""

from cnnlab.cli.main import main

raise SystemExit(main())
