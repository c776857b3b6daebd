"""Sweeps: the batch. A run executes a notebook (papermill) or a function named "module:function"
(`runs`) on Dask workers (`batch`), and its record and files are stored resumably (`store`); `cli` holds
the argument checks every command line shares. It runs what it is given and knows no study.

    python -m dreamflow_utils.sweeps.batch notebooks/02_log_block_C_s=10_N2=100.ipynb --seeds 0-4 --jobs 2
"""
