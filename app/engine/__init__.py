"""The training engine: candles, strategies, a vectorised backtester, optimisation and
validation. Pure NumPy and Optuna: no database, no queue, so the worker and the benchmark run
exactly the same code."""
