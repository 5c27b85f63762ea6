"""Runtime support for the stock MMEngine runner."""
