"""python -m dreamflow_utils.notebook {check-data,render,clean,check} ...: see `notebook.main`."""
import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
