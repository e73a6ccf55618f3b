"""The pre-trade risk gate: every `OrderIntent` is checked here before it can become an order."""
