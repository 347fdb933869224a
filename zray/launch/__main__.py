"""`python -m zray.launch [options] app.py [args]` (see zray/launch/launcher.py)."""
import sys

from .launcher import main

sys.exit(main())
