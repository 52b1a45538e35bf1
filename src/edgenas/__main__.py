import sys

from edgenas.cli import main

sys.exit(main())
