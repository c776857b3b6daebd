"""The core: what the log's model is and how it trains. Configuration (`config`), patch geometry,
data sets, weights (`model`), atomic files, the log's experiments, quick mode, and the one training
loop (`train`, the only core module that meets the engines, through their registry). It knows
nothing of the batch, the studies or the notebooks."""
__version__ = "0.2.0"
