"""The order book: order-reference table, price levels per subscribed symbol, BBO updates."""
