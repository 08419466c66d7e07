import sys

from rlfm_edge.cli import main

sys.exit(main())
