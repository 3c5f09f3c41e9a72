import sys

from hill_app.cli import main

sys.exit(main())
