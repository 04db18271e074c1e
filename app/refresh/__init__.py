"""The `candles_refresh` job kind's handler (`job`): candles from an exchange, in a worker."""
