import sys

from tsgw.cli import main

sys.exit(main())
