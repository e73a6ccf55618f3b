"""The order encoder: Ethernet/IPv4/TCP frames carrying SoupBinTCP + OUCH 5.0 Enter Order."""
