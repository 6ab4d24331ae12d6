import sys

from jaxloop.cli import main

sys.exit(main())
