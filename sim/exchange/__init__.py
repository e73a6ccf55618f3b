"""The simulated exchange: order entry (SoupBinTCP/OUCH 5.0), matching, and the order events
its drop copy and reports are made from (`tickwire.sim.exchange.events`)."""
