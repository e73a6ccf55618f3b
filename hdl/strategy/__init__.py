"""Strategies: `BookUpdate` and `BookEvent` in, `OrderIntent` out (see `records`)."""
